"""Several replicas, one deployment (issue 25), with real processes: two `rcmu mcp --http` servers, each
with an empty `RCMU_HOME` of its own, share one real PostgreSQL database (`RCMU_DATABASE_URL`) and one
real Chroma server (`RCMU_CHROMA_URL`), as two machines behind a load balancer would. They are driven
by the official MCP SDK's client with per-user bearer tokens; answers come from the loopback
OpenAI-compatible fake model.

- alice teaches through replica A and asks through replica B: recognised, her reference photo shown
  by B, even once A's home is gone (nothing that matters stayed on A's disk);
- a library indexed on A's machine (`rcmu index` with A's settings: MCP has no index tool) is found
  the same through both replicas;
- bob's token on either replica sees nothing of alice's: people, person resources, searches, photo ids;
- `kill -9` of a third replica mid-write (holding the memory's write lock) leaves B consistent: it
  answers, shows no half-written entity, and its next write goes through (no stale lock);
- the same for `rcmu index` killed while it holds the library's lock;
- 2 replicas x 8 concurrent clients, each teaching a distinct entity: every write lands exactly once.

tests/test_deploy.py runs the documented check, deploy/check.sh, which starts a deployment of its own.

The replicas, the database and the Chroma server are started once for the module (a replica takes
~10 s to start on the shared 2-core machine); each test uses names of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from rcmu_agent.postgres import _lock_id
from rcmu_agent.testing import Reply, serve
from tests.conftest import new_database, running_chroma
from tests.security._stores import kept_on_disk
from tests.tools.test_mcp import _env, _http_server, http_session

pytestmark = pytest.mark.integration  # servers as subprocesses over a real PostgreSQL and Chroma server

RCMU = str(Path(sys.executable).with_name("rcmu"))
REPLY = "Barack Obama [1] is in the photo."
OBAMA_INFO = "alice-knows-obama-from-law-school"
LIBRARY_FILES = {"two_people.jpg", "obama1.jpg"}
COPIES = 3  # photos of the index killed mid-way
ADVISORY_HELD = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"


@dataclass
class Replica:
    url: str  # the MCP endpoint
    folder: Path  # this "machine's" disk: HOME, RCMU_HOME (folder/rcmu), the server's log
    env: dict[str, str]  # what the replica was started with (for `rcmu index` on the same machine)

    @property
    def home(self) -> Path:
        return self.folder / "rcmu"


@dataclass
class Deployment:
    a: Replica
    b: Replica
    services: dict[str, str]  # RCMU_DATABASE_URL and RCMU_CHROMA_URL
    model_url: str
    shared_data: Path


@pytest.fixture(scope="module")
def deployment(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[Deployment]:
    """One database, one Chroma server, the fake model and two replicas with empty homes of their own."""
    with running_chroma(tmp_path_factory.mktemp("chroma")) as chroma, serve() as model:
        model.default = Reply(text=REPLY)
        services = {"RCMU_DATABASE_URL": new_database(postgres_server), "RCMU_CHROMA_URL": chroma}
        folders = [tmp_path_factory.mktemp(name) for name in ("replica-a", "replica-b")]
        servers = [_http_server(folder, shared_data, model.url, **services) for folder in folders]
        try:
            with ThreadPoolExecutor(2) as pool:  # both start at once: ~10 s each on the shared machine
                urls = list(pool.map(next, servers))
            a, b = (
                Replica(url, folder, _replica_env(folder, shared_data, model.url, services))
                for url, folder in zip(urls, folders, strict=True)
            )
            yield Deployment(a, b, services, model.url, shared_data)
        finally:
            for server in servers:
                server.close()  # the generator's `finally`: terminate the replica


def _replica_env(folder: Path, shared_data: Path, model_url: str, services: dict[str, str]) -> dict[str, str]:
    """The environment `_http_server` gives its replica (the same `_env`), for other commands on that machine."""
    extra = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": model_url, "RCMU_MODEL": "m", **services}
    return {**_env(folder, shared_data, **extra), "RCMU_LIBRARY_WORKERS": "1"}


def _structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return dict(result.structured_content)


async def _call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    async with http_session(url, token) as client:
        return await client.call_tool(tool, arguments)


def _names(url: str, token: str) -> list[str]:
    people = _structured(asyncio.run(_call(url, token, "list_people", {})))["people"]
    return sorted(p["name"] for p in people)


@pytest.fixture(scope="module")
def obama(deployment: Deployment, faces_dir: Path) -> dict[str, Any]:
    """alice teaches Barack Obama through replica A; then A's home is removed (a machine replaced)."""
    photo = str(faces_dir / "reference" / "obama_obama.jpg")
    arguments = {"name": "Barack Obama", "info": OBAMA_INFO, "photos": [photo]}
    taught = _structured(asyncio.run(_call(deployment.a.url, "alice-token", "remember", arguments)))
    shutil.rmtree(deployment.a.home, ignore_errors=True)
    return taught


@pytest.fixture(scope="module")
def library(deployment: Deployment, obama: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice's library (two scenes with Obama), indexed by `rcmu index` on replica A's machine."""
    folder = tmp_path_factory.mktemp("alice-photos")
    for name in LIBRARY_FILES:
        shutil.copy(deployment.shared_data / "faces" / "scenes" / name, folder / name)
    env = {**deployment.a.env, "RCMU_ALLOWED_ROOTS": os.pathsep.join([str(deployment.shared_data), str(folder)])}
    done = subprocess.run(
        [RCMU, "index", str(folder), "--user", "alice", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["added"] == len(LIBRARY_FILES) and not report["skipped"], report
    return folder


def test_taught_through_one_replica_recognised_and_shown_through_the_other(
    deployment: Deployment, obama: dict[str, Any], faces_dir: Path
) -> None:
    """Face descriptors, the entity and its reference photo all live in the shared services: B, which
    never saw the teaching, recognises Obama in a scene and shows his reference photo, after A's home
    was deleted. A photo taken in through B is read by its id through A."""
    assert obama["entity"]["name"] == "Barack Obama" and obama["entity"]["photos"] == 1
    scene = str(faces_dir / "scenes" / "two_people.jpg")

    async def run() -> None:
        async with http_session(deployment.b.url, "alice-token") as b:
            people = _structured(await b.call_tool("list_people", {}))["people"]
            assert [(p["name"], p["info"]) for p in people] == [("Barack Obama", OBAMA_INFO)]
            asked = _structured(await b.call_tool("ask_about_photo", {"photo": scene, "question": "Who is this?"}))
            assert {r["name"] for r in asked["regions"]} == {"Barack Obama", None}  # Biden was never taught
            assert asked["answer"] == REPLY
            uri = next(str(r.uri) for r in (await b.list_resources()).resources if r.name == "Barack Obama")
            person = json.loads((await b.read_resource(uri)).contents[0].text)
            assert person["info"] == OBAMA_INFO
            assert len(person["thumbnails"]) == 1 and person["thumbnails"][0].startswith("data:image/jpeg;base64,")
            photo_id = asked["photo"]
        async with http_session(deployment.a.url, "alice-token") as a:  # the id B gave, asked through A
            again = _structured(await a.call_tool("ask_about_photo", {"photo": photo_id, "question": "And now?"}))
            assert {r["name"] for r in again["regions"]} == {"Barack Obama", None}

    asyncio.run(run())


def _search(url: str, token: str, arguments: dict[str, Any]) -> list[tuple[str, str]]:
    photos = _structured(asyncio.run(_call(url, token, "search_photos", arguments)))["photos"]
    return sorted((p["id"], p["file"]) for p in photos)


def test_indexed_on_one_replica_found_the_same_through_both(deployment: Deployment, library: Path) -> None:
    by_person = {"people": ["Barack Obama"]}
    through_b = _search(deployment.b.url, "alice-token", by_person)
    assert {file for _, file in through_b} == LIBRARY_FILES
    assert _search(deployment.a.url, "alice-token", by_person) == through_b
    by_text = {"text": "Barack Obama", "limit": 5}
    assert _search(deployment.b.url, "alice-token", by_text) == _search(deployment.a.url, "alice-token", by_text)
    assert _search(deployment.b.url, "alice-token", by_text)


def test_bob_sees_nothing_of_alices_on_either_replica(
    deployment: Deployment, obama: dict[str, Any], library: Path, faces_dir: Path
) -> None:
    scene = str(faces_dir / "scenes" / "two_people.jpg")
    private = str(faces_dir / "scenes" / "alex_lacamoire1.jpg")  # a photo only alice sends: its id is hers alone
    alices = _structured(asyncio.run(_call(deployment.a.url, "alice-token", "describe_photo", {"photo": private})))
    alice_photo, obama_id = alices["photo"], obama["entity"]["id"]

    async def as_bob(url: str) -> list[Any]:
        async with http_session(url, "bob-token") as bob:
            assert _structured(await bob.call_tool("list_people", {})) == {"people": []}
            assert not [r for r in (await bob.list_resources()).resources if r.name == "Barack Obama"]
            with pytest.raises(Exception, match="no person"):
                await bob.read_resource(f"rcmu://people/{obama_id}")
            searched = _structured(await bob.call_tool("search_photos", {"text": "Barack Obama", "limit": 10}))
            assert searched["photos"] == []
            by_person = await bob.call_tool("search_photos", {"people": ["Barack Obama"]})
            assert by_person.is_error and " — " in by_person.content[0].text
            by_id = await bob.call_tool("ask_about_photo", {"photo": alice_photo, "question": "Who?"})
            assert by_id.is_error and "no such photo" in by_id.content[0].text
            asked = _structured(await bob.call_tool("ask_about_photo", {"photo": scene, "question": "Who?"}))
            assert asked["regions"] and all(r["name"] is None for r in asked["regions"])
            recalled = _structured(await bob.call_tool("recall", {"question": "Who is Barack Obama?"}))
            forgot = await bob.call_tool("forget", {"name": "Barack Obama"})
            assert forgot.is_error
            return [searched, asked, recalled]

    for replica in (deployment.a, deployment.b):
        seen = json.dumps(asyncio.run(as_bob(replica.url)))
        leaked = [word for word in (OBAMA_INFO, obama_id, alice_photo, *LIBRARY_FILES) if word in seen]
        assert not leaked, leaked
    assert "Barack Obama" in _names(deployment.b.url, "alice-token")  # bob's forget removed nothing


class _KillWhenLocked(threading.Thread):
    """Polls PostgreSQL until the advisory lock `name` (what `rcmu_agent.postgres.advisory_lock` takes
    around a write) is granted, then `kill -9`s `pid` at once; `killed` says whether that happened."""

    def __init__(self, database_url: str, name: str, pid: int) -> None:
        super().__init__(daemon=True)
        key = _lock_id(name) % (1 << 64)
        self.database_url, self.pid, self.key = database_url, pid, (key >> 32, key & 0xFFFFFFFF)
        self.killed = False
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stop.is_set():
                row = conn.execute(f"{ADVISORY_HELD} AND classid = %s AND objid = %s", self.key).fetchone()
                if row and row[0]:
                    os.kill(self.pid, signal.SIGKILL)
                    self.killed = True
                    return


def _pid_on(url: str) -> int:
    """The pid of this test's child `rcmu mcp --http` serving `url` (what `_http_server` started)."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    for child in psutil.Process().children(recursive=True):
        if f"127.0.0.1:{port}" in " ".join(child.cmdline()):
            return int(child.pid)
    raise AssertionError(f"no replica serves {url}")


def test_kill_9_of_a_replica_mid_remember_leaves_the_other_consistent(
    deployment: Deployment, tmp_path: Path, faces_dir: Path
) -> None:
    """A third replica C is killed while it holds the shared write lock, teaching a person from several
    photos. B answers at once, lists either the whole person or nothing of it, shows every photo it
    lists, and its next write (under the same lock) goes through: the dead session's lock is gone."""
    ref = faces_dir / "reference"
    photos = [str(ref / name) for name in ("rose_leslie_img1.jpg", "rose_leslie_img2.jpg")]
    database = deployment.services["RCMU_DATABASE_URL"]
    replica_c = _http_server(tmp_path, deployment.shared_data, deployment.model_url, **deployment.services)
    url = next(replica_c)
    killed_during = []
    try:
        pid = _pid_on(url)
        for attempt in range(4):  # each try teaches a new name; the lock is held for well under a second
            watcher = _KillWhenLocked(database, "memory", pid)
            watcher.start()
            name = f"Rose Leslie {attempt}"
            with contextlib.suppress(Exception):  # the connection dies with the replica
                asyncio.run(_call(url, "alice-token", "remember", {"name": name, "info": "x", "photos": photos}))
            watcher.stop.set()
            watcher.join(timeout=10)
            if watcher.killed:
                killed_during.append(name)
                break
        assert killed_during, "the replica was never caught holding the write lock"
    finally:
        replica_c.close()

    async def after() -> None:
        async with http_session(deployment.b.url, "alice-token") as b:
            started = time.monotonic()
            people = {p["name"]: p for p in _structured(await b.call_tool("list_people", {}))["people"]}
            assert time.monotonic() - started < 10
            victim = people.get(killed_during[0])
            assert victim is None or victim["photos"] == len(photos), victim  # all of it or none of it
            for person in people.values():  # every listed person's photos can be shown
                shown = json.loads((await b.read_resource(f"rcmu://people/{person['id']}")).contents[0].text)
                assert len(shown["thumbnails"]) == person["photos"], person["name"]
            later = await b.call_tool("remember", {"name": "After The Crash", "info": "y", "photos": photos[:1]})
            assert _structured(later)["entity"]["photos"] == 1
            scene = str(faces_dir / "scenes" / "two_people.jpg")
            asked = _structured(await b.call_tool("ask_about_photo", {"photo": scene, "question": "Who?"}))
            assert "Barack Obama" in {r["name"] for r in asked["regions"]}

    asyncio.run(after())
    with psycopg.connect(database, autocommit=True) as conn:
        held = conn.execute(ADVISORY_HELD).fetchone()
    assert held == (0,)  # no lock left behind by the dead replica


def test_kill_9_mid_index_leaves_the_library_consistent_and_unlocked(
    deployment: Deployment, library: Path, tmp_path: Path
) -> None:
    """`rcmu index` on a third machine is killed while it holds the library's lock; searches through B
    still answer with whole photos, and the next index (on A's machine) goes through and finds them all."""
    folder = tmp_path / "more"
    folder.mkdir()
    scenes = deployment.shared_data / "faces" / "scenes"
    for n in range(COPIES):  # distinct bytes, so each is a photo of its own
        data = (scenes / "obama1.jpg").read_bytes() + bytes([n])
        (folder / f"obama_copy_{n}.jpg").write_bytes(data)
    env = {
        **_replica_env(tmp_path / "machine-c", deployment.shared_data, deployment.model_url, deployment.services),
        "RCMU_ALLOWED_ROOTS": str(folder),
    }
    indexer = subprocess.Popen(
        [RCMU, "index", str(folder), "--user", "alice", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher = _KillWhenLocked(deployment.services["RCMU_DATABASE_URL"], "library", indexer.pid)
    watcher.start()
    indexer.wait(timeout=300)
    watcher.stop.set()
    watcher.join(timeout=10)
    assert watcher.killed and indexer.returncode == -signal.SIGKILL, "the index finished before it was killed"

    found = _search(deployment.b.url, "alice-token", {"people": ["Barack Obama"], "limit": 50})
    files, copies = {file for _, file in found}, {f"obama_copy_{n}.jpg" for n in range(COPIES)}
    assert LIBRARY_FILES.issubset(files) and files.issubset(LIBRARY_FILES | copies)  # whole photos, none half-indexed

    done = subprocess.run(
        [RCMU, "index", str(folder), "--user", "alice", "--json"],
        env={**deployment.a.env, "RCMU_ALLOWED_ROOTS": str(folder)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = _search(deployment.b.url, "alice-token", {"people": ["Barack Obama"], "limit": 50})
    assert {file for _, file in found} == LIBRARY_FILES | copies


def test_two_replicas_times_eight_concurrent_clients_every_write_lands_once(deployment: Deployment) -> None:
    """16 clients at once (8 per replica), each teaching a pet of its own: the shared lock serialises
    them across processes; each pet is listed exactly once, the same through both replicas."""
    names = [f"Pet {side}{n}" for side in "ab" for n in range(8)]

    async def teach(url: str, name: str) -> Any:
        return await _call(url, "alice-token", "remember", {"name": name, "info": f"{name} info", "category": "dog"})

    async def all_at_once() -> list[Any]:
        urls = {"a": deployment.a.url, "b": deployment.b.url}
        return await asyncio.gather(*(teach(urls[name[4]], name) for name in names))

    started = time.monotonic()
    results = asyncio.run(all_at_once())
    elapsed = time.monotonic() - started
    assert [_structured(r)["entity"]["name"] for r in results] == names, elapsed
    for replica in (deployment.a, deployment.b):
        people = _structured(asyncio.run(_call(replica.url, "alice-token", "list_people", {"category": "dog"})))
        listed = [p["name"] for p in people["people"] if p["name"].startswith("Pet ")]
        assert sorted(listed) == sorted(names)  # each once: none lost, none doubled


def test_after_all_that_the_replicas_homes_hold_nothing_but_caches(deployment: Deployment) -> None:
    """Run last: after teaching, asking, indexing and 16 concurrent writes through both replicas, neither
    home holds a file outside a cache — what a replica knows is in PostgreSQL and Chroma (issue 25's rule)."""
    for replica in (deployment.a, deployment.b):
        assert kept_on_disk(replica.home) == [], replica.home
