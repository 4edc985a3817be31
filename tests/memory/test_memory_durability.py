"""The memory when things go wrong: interrupted and killed writes, a second writer, another image model,
and Chroma as a real server. Whatever happens, nothing half-written is ever matched or shown.

The crash, lock and model tests run in both storage modes (`store_env`): `embedded`, photos and the
journal under RCMU_HOME and a file lock; `shared`, a PostgreSQL database (photos, journal, advisory
lock) and a Chroma server, where the home may keep nothing but caches. What a crash left is read from
the stores themselves (tests/security/_stores.py), never through the code under test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from _memory_helpers import PEOPLE, _ask, _assistant, _by_x, _info_lines, _references, _snapshot
from PIL import Image

from rcmu_agent.errors import EmbeddingMismatchError, InvalidInputError, MemoryLockedError, RcmuError
from rcmu_agent.faces import FaceDetector, FaceEncoder
from rcmu_agent.memory import MemoryStore, ReferencePhoto
from tests.security._stores import journal, kept_on_disk, reference_key, references, service_settings

pytestmark = pytest.mark.integration  # subprocesses, dlib faces, MiniLM and Chroma, for real


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _kept(home: Path, env: dict[str, str], user: str | None = None) -> list[str]:
    """The reference photos stored (files under the home, or rows in PostgreSQL); shared, the home must
    keep nothing but caches besides."""
    if env:
        assert kept_on_disk(home) == [], kept_on_disk(home)
    return references(home, env.get("RCMU_DATABASE_URL"), user)


# ---- crashes --------------------------------------------------------------------------------------
def test_an_interrupted_write_rolls_back_and_keeps_what_was_there(
    tmp_path: Path, faces_dir: Path, scenes: Path, monkeypatch: pytest.MonkeyPatch, store_env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    assistant = _assistant(home, **service_settings(store_env))
    first, second = _references(faces_dir)["obama"]
    obama = assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[first])
    memory = assistant.parts.memory
    before, files = _snapshot(assistant), _kept(home, store_env)
    assert files == [reference_key("default", obama.photos[0])]

    def interrupt(texts: object) -> object:  # the entity row is written last: this is after the vectors
        raise KeyboardInterrupt

    monkeypatch.setattr(memory._text, "embed", interrupt)
    with pytest.raises(KeyboardInterrupt):  # a new person
        assistant.remember("Joe Biden", info=PEOPLE["biden"][1], photos=_references(faces_dir)["biden"])
    with pytest.raises(KeyboardInterrupt):  # an update that re-sends the photo Obama already has
        assistant.remember("Barack Obama", info="new info", photos=[first, second])
    monkeypatch.undo()

    assert _snapshot(assistant) == before and _kept(home, store_env) == files
    assert memory._col("faces").count() == 1 and journal(home, store_env.get("RCMU_DATABASE_URL")) is None
    answer = _ask(assistant, scenes / "two_people.jpg")  # Obama still has his reference; Biden never landed
    assert [(r.name, r.entity_id) for r in _by_x(answer)] == [("Barack Obama", obama.id), (None, None)]


KILLED_WRITE = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from rcmu_agent.memory import MemoryStore, ReferencePhoto

    home, photo, descriptor = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    # the storage mode from the environment: RCMU_DATABASE_URL and RCMU_CHROMA_URL, or neither
    store = MemoryStore(Path(home), database_url=os.environ.get("RCMU_DATABASE_URL") or None,
                        chroma_url=os.environ.get("RCMU_CHROMA_URL") or None)
    store._update_profile = lambda *args: os._exit(9)  # killed after the vectors, before the entity row
    store.remember("default", "Barack Obama", "info", "person",
                   [ReferencePhoto(photo.read_bytes(), photo.suffix, face_descriptor=descriptor)])
    """
)


def test_a_killed_write_leaves_nothing_that_matches_and_the_next_write_cleans_up(
    tmp_path: Path, faces_dir: Path, scenes: Path, store_env: dict[str, str]
) -> None:
    home, database_url = tmp_path / "home", store_env.get("RCMU_DATABASE_URL")
    photo = _references(faces_dir)["obama"][0]
    with Image.open(photo) as img:
        image = img.convert("RGB")
    descriptor = FaceEncoder().encode(image, FaceDetector().detect(image))[0].descriptor
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(home), str(photo), json.dumps(descriptor)],
        env={**_subprocess_env(), **store_env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the repository root, whose bare rcmu_agent/ folder would shadow the installed package
    )
    assert killed.returncode == 9, killed.stderr[-2000:]
    # what the killed process left: its journal, a photo copy and a face vector, but no entity row
    intent = json.loads(journal(home, database_url) or "{}")
    ((entity_id, digests),) = intent["entities"].items()
    (orphan,) = _kept(home, store_env)
    assert intent["user"] == "default" and orphan.startswith(f"default/{entity_id}/{digests[0]}")

    assistant = _assistant(home, **service_settings(store_env))
    memory = assistant.parts.memory
    assert memory._col("faces").count() == 1
    assert assistant.entities() == [] and memory.users() == []
    answer = _ask(assistant, scenes / "obama1.jpg")  # the orphan vector is the nearest, but matches no one
    assert [(r.name, r.entity_id, r.index) for r in answer.regions] == [(None, None, 1)]  # unknown, numbered
    assert _info_lines(answer.prompt) == []

    biden = assistant.remember("Joe Biden", info=PEOPLE["biden"][1], photos=_references(faces_dir)["biden"][:1])
    assert journal(home, database_url) is None
    assert memory._col("faces").get(include=[])["ids"] == [f"{biden.id}:{Path(biden.photos[0]).stem}"]
    assert _kept(home, store_env) == [reference_key("default", biden.photos[0])]  # the orphan copy is gone too
    assert not (home / "photos" / "default" / entity_id).exists()  # embedded: its folder too
    assert [e.name for e in assistant.entities()] == ["Joe Biden"]


# ---- configuration guards -------------------------------------------------------------------------
def test_reopening_with_another_image_model_is_refused(
    tmp_path: Path, shared_data: Path, store_env: dict[str, str]
) -> None:
    home, services = tmp_path / "home", service_settings(store_env)
    photo = shared_data / "objects" / "chelsea.png"
    built = MemoryStore(home, image_model="clip-a", **services)
    cat = built.remember(
        "default", "Chelsea", "My cat.", "cat", [ReferencePhoto(photo.read_bytes(), ".png", image_embedding=[1, 0, 0])]
    )
    assert built.match_objects("default", [[1, 0, 0]], ["cat"], 0.9)[0] is not None

    other = MemoryStore(home, image_model="other", **services)
    with pytest.raises(EmbeddingMismatchError) as err:
        other.match_objects("default", [[1, 0, 0]], ["cat"], 0.9)
    message = str(err.value)
    assert "\n" not in message and "'clip-a'" in message and "'other'" in message and err.value.fix
    with pytest.raises(EmbeddingMismatchError):  # a write with the wrong model is refused and undone
        other.remember("default", "Chelsea", "Changed.", "cat", [ReferencePhoto(b"x", ".png", image_embedding=[0, 1])])
    assert [(e.id, e.info, e.photos) for e in other.entities("default")] == [(cat.id, "My cat.", cat.photos)]
    assert _kept(home, store_env) == [reference_key("default", cat.photos[0])]


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rcmu_agent.memory._client import write_lock

    # the memory's write lock as another writer holds it: home/memory.lock, or the database's advisory lock
    with write_lock(Path(sys.argv[1]), 5, sys.argv[2] or None):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_writer_gets_a_clear_lock_error(tmp_path: Path, faces_dir: Path, store_env: dict[str, str]) -> None:
    home, database_url = tmp_path / "home", store_env.get("RCMU_DATABASE_URL")
    home.mkdir()
    holder = subprocess.Popen(  # shared: another replica, with a home of its own
        [sys.executable, "-c", HOLD_LOCK, str(home if not store_env else tmp_path / "other"), database_url or ""],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assistant = _assistant(home, lock_timeout=0.5, **service_settings(store_env))
        photo = _references(faces_dir)["obama"][0]
        start = time.monotonic()
        with pytest.raises(MemoryLockedError) as err:
            assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[photo])
        assert time.monotonic() - start < 30
        if store_env:  # the writer is elsewhere: no home of this machine is named
            assert "another replica is writing" in err.value.problem and str(tmp_path) not in err.value.problem
        else:
            assert str(home) in err.value.problem and "RCMU_LOCK_TIMEOUT" in err.value.fix
        assert assistant.entities() == [] and _kept(home, store_env) == []
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[photo]).name == "Barack Obama"


def test_a_writer_thread_waits_for_the_lock_then_fails_clearly(tmp_path: Path, store_env: dict[str, str]) -> None:
    """Two threads of one process: the second waits `lock_timeout` for the first, never interleaves."""
    from rcmu_agent.memory._client import write_lock

    home, services = tmp_path / "home", service_settings(store_env)
    home.mkdir()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_lock(home, 5, services["database_url"]):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        store = MemoryStore(home, lock_timeout=0.3, **services)
        with pytest.raises(MemoryLockedError):
            store.remember("default", "Someone", "Info.", "person", [])
    finally:
        release.set()
        thread.join(10)
    assert store.remember("default", "Someone", "Info.", "person", []).name == "Someone"


# ---- Chroma server mode ---------------------------------------------------------------------------
def test_chroma_server_mode(tmp_path: Path, faces_dir: Path, scenes: Path, chroma_server: str) -> None:
    import chromadb

    home = tmp_path / "home"
    assistant = _assistant(home, chroma_url=chroma_server)
    obama = assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=_references(faces_dir)["obama"])
    answer = _ask(assistant, scenes / "obama1.jpg")
    assert [(r.name, r.entity_id, r.index) for r in answer.regions] == [("Barack Obama", obama.id, 1)]
    assert _info_lines(answer.prompt)[0].endswith(PEOPLE["obama"][1])

    assert not (home / "chroma").exists()  # nothing embedded: the vectors live in the server
    port = int(chroma_server.rsplit(":", 1)[1])
    server = chromadb.HttpClient(host="127.0.0.1", port=port, settings=chromadb.Settings(anonymized_telemetry=False))
    assert server.get_collection("faces").count() == 2
    assert server.get_collection("entities").get(ids=[obama.id])["ids"] == [obama.id]


def test_chroma_url_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not an http"):
        _assistant(tmp_path / "a", chroma_url="ftp://example.org").entities()
    with pytest.raises(RcmuError) as err:  # nothing listens there
        _assistant(tmp_path / "b", chroma_url=f"http://127.0.0.1:{_free_port()}").entities()
    assert "cannot reach the Chroma server" in err.value.problem and "chroma run" in err.value.fix
