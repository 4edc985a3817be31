"""The personal memory shared by replicas: homes that share no disk, one PostgreSQL database and one
Chroma server (real ones, started by the fixtures), dlib faces on the shared photos.

What one home teaches, another recognises and shows (its reference photo's bytes, MCP thumbnails);
nothing lands under either home; another user sees none of it; forgetting through any home removes
the bytes from the database; a write killed with SIGKILL on one home is rolled back by the next write
on another; `rcmu export` / `rcmu import` carry a memory from the shared store to a home folder and
back with the same photos.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _memory_helpers import PEOPLE, QUESTION, _references
from mcp import Client
from mcp.shared.exceptions import MCPError
from PIL import Image

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import NotFoundError
from rcmu_agent.memory import MemoryStore, ReferencePhoto
from rcmu_agent.memory._records import photo_digest
from rcmu_agent.memory._references import memory_storage
from rcmu_agent.settings import Settings
from rcmu_agent.tools.mcp.server import build_server

pytestmark = pytest.mark.integration  # PostgreSQL, a Chroma server, dlib, MiniLM and killed processes

RCMU = str(Path(sys.executable).with_name("rcmu"))  # the installed command (see tests/test_transfer.py)


def _shared(home: Path, services: dict[str, str]) -> Assistant:
    """One replica: its own (empty) home, the deployment's database and Chroma server."""
    return Assistant(
        Settings(
            home=home,
            database_url=services["RCMU_DATABASE_URL"],
            chroma_url=services["RCMU_CHROMA_URL"],
            object_detector=None,
            image_embedding_model=None,
        )
    )


def _embedded(home: Path) -> Assistant:
    return Assistant(Settings(home=home, object_detector=None, image_embedding_model=None))


def _env(home: Path, services: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"RCMU_DATABASE_URL", "RCMU_CHROMA_URL"}}
    return {
        **env,
        **(services or {}),
        "RCMU_HOME": str(home),
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _names(assistant: Assistant, photo: Path, user: str) -> list[str | None]:
    answer = assistant.ask(QUESTION, photo, user=user, context_only=True)
    return sorted((r.name for r in answer.regions), key=str)


def _rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, params).fetchall())


def _nothing_kept_under(*homes: Path) -> None:
    for home in homes:
        assert not (home / "photos").exists(), sorted(home.rglob("*"))
        assert not (home / "memory.journal").exists() and not (home / "vault").exists()
        assert not (home / "chroma").exists()  # the vectors are on the Chroma server


def _person(assistant: Assistant, user: str, entity_id: str) -> dict[str, Any]:
    """The `rcmu://people/{id}` resource as a real MCP client (the SDK's, in-process) lists and reads it."""
    uri = f"rcmu://people/{entity_id}"

    async def read() -> dict[str, Any]:
        async with Client(build_server(assistant, user=user)) as client:
            listed = [str(r.uri) for r in (await client.list_resources()).resources]
            try:
                got = await client.read_resource(uri)
            except MCPError as exc:  # the error the client was sent
                return {"error": str(exc), "listed": uri in listed}
            assert uri in listed
            return dict(json.loads(got.contents[0].text))

    return asyncio.run(read())


# ---- one memory, two homes ------------------------------------------------------------------------
def test_alice_teaches_through_one_home_and_the_other_recognises_shows_and_forgets(
    tmp_path: Path, shared_services: dict[str, str], faces_dir: Path, scenes: Path
) -> None:
    url = shared_services["RCMU_DATABASE_URL"]
    first, second = _shared(tmp_path / "a", shared_services), _shared(tmp_path / "b", shared_services)
    photo = _references(faces_dir)["obama"][0]
    obama = first.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[photo], user="alice")
    (stored,) = obama.photos
    assert stored == f"ref:{obama.id}/{photo_digest(photo.read_bytes())}.jpg"  # no path on any machine's disk

    assert "Barack Obama" in _names(second, scenes / "two_people.jpg", "alice")
    seen = second.parts.memory.get("alice", "Barack Obama")
    assert seen.id == obama.id and second.parts.memory.references.read("alice", seen.id, stored) == photo.read_bytes()
    person = _person(second, "alice", obama.id)
    assert person["name"] == "Barack Obama" and "missing" not in person
    (thumbnail,) = person["thumbnails"]
    with Image.open(io.BytesIO(base64.b64decode(thumbnail.split(",", 1)[1]))) as img:
        assert img.format == "JPEG" and max(img.size) == 160
    _nothing_kept_under(tmp_path / "a", tmp_path / "b")

    # bob, on either home: nothing of alice's
    for home in (first, second):
        assert home.entities(user="bob") == [] and None in _names(home, scenes / "obama1.jpg", "bob")
        with pytest.raises(NotFoundError, match="missing"):
            home.parts.memory.references.read("bob", obama.id, stored)
        refused = _person(home, "bob", obama.id)
        assert refused == {
            "error": f"no person {obama.id!r} in your memory — list them with the list_people tool",
            "listed": False,
        }

    # the database holds the bytes once, however often they are taught
    first.remember("Barack Obama", info="the 44th president", photos=[photo], user="alice")
    assert _rows(url, "SELECT user_id, entity_id, length(data) FROM rcmu_reference_photos") == [
        ("alice", obama.id, len(photo.read_bytes()))
    ]

    second.forget("Barack Obama", user="alice")
    assert _rows(url, "SELECT count(*) FROM rcmu_reference_photos") == [(0,)]
    assert first.entities(user="alice") == [] and _names(first, scenes / "obama1.jpg", "alice") == [None]
    with pytest.raises(NotFoundError, match=f"reference photo of {obama.id} is missing"):
        first.parts.memory.references.read("alice", obama.id, stored)
    _nothing_kept_under(tmp_path / "a", tmp_path / "b")


def test_a_reference_photo_the_store_lost_is_said_in_one_line_by_mcp(
    tmp_path: Path, shared_services: dict[str, str], faces_dir: Path
) -> None:
    url = shared_services["RCMU_DATABASE_URL"]
    replica = _shared(tmp_path / "a", shared_services)
    first, second = _references(faces_dir)["biden"]
    biden = replica.remember("Joe Biden", info=PEOPLE["biden"][1], photos=[first, second], user="alice")
    with psycopg.connect(url) as conn:  # one of the two rows is lost (a restore from an older backup)
        conn.execute("DELETE FROM rcmu_reference_photos WHERE name LIKE %s", (photo_digest(first.read_bytes()) + "%",))
    person = _person(replica, "alice", biden.id)
    assert len(person["thumbnails"]) == 1
    assert person["missing"] == (
        f"a reference photo of {biden.id} is missing from the memory — "
        "teach it again with a photo (remember), or forget it and teach it anew"
    )


# ---- a replica killed mid-write -------------------------------------------------------------------
KILLED_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from rcmu_agent import Assistant, Settings

    home, database, chroma, photo = sys.argv[1:5]
    settings = Settings(home=Path(home), database_url=database, chroma_url=chroma,
                        object_detector=None, image_embedding_model=None)
    assistant = Assistant(settings)
    memory = assistant.parts.memory
    # the first step after the photo copies and their vectors, before any entity row: SIGKILL
    memory._update_profile = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    assistant.remember("Joe Biden", info="killed", photos=[photo], user="alice")
    """
)


def test_a_write_killed_on_one_home_is_rolled_back_by_the_next_write_on_another(
    tmp_path: Path, shared_services: dict[str, str], faces_dir: Path, scenes: Path
) -> None:
    url = shared_services["RCMU_DATABASE_URL"]
    refs = _references(faces_dir)
    survivor = _shared(tmp_path / "b", shared_services)
    obama = survivor.remember("Barack Obama", info=PEOPLE["obama"][1], photos=refs["obama"][:1], user="alice")

    chroma, reference = shared_services["RCMU_CHROMA_URL"], str(refs["biden"][0])
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(tmp_path / "a"), url, chroma, reference],
        env=_env(tmp_path / "a"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository root, whose bare rcmu_agent/ folder would shadow the install
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    # what the killed replica left, all in the shared services: its journal, a photo row, a face vector
    ((body,),) = _rows(url, "SELECT body FROM rcmu_journals WHERE name = 'memory'")
    intent = json.loads(body)
    ((biden_id, (digest,)),) = intent["entities"].items()
    assert intent["user"] == "alice" and digest == photo_digest(refs["biden"][0].read_bytes())
    assert _rows(url, "SELECT entity_id FROM rcmu_reference_photos ORDER BY entity_id") == sorted(
        [(obama.id,), (biden_id,)]
    )
    faces = survivor.parts.memory._col("faces")
    assert sorted(faces.get(include=[])["ids"]) == sorted(
        [f"{obama.id}:{Path(obama.photos[0]).stem}", f"{biden_id}:{digest}"]
    )
    # readers on the other home: the orphan vector matches no one
    assert [e.name for e in survivor.entities(user="alice")] == ["Barack Obama"]
    assert _names(survivor, scenes / "two_people.jpg", "alice") == ["Barack Obama", None]

    kit = survivor.remember(
        "Kit Harington", info=PEOPLE["kit_harington"][1], photos=refs["kit_harington"][:1], user="alice"
    )
    assert _rows(url, "SELECT count(*) FROM rcmu_journals") == [(0,)]
    assert _rows(url, "SELECT entity_id FROM rcmu_reference_photos ORDER BY entity_id") == sorted(
        [(obama.id,), (kit.id,)]
    )
    assert sorted(faces.get(include=[])["ids"]) == sorted(f"{e.id}:{Path(e.photos[0]).stem}" for e in (obama, kit))
    _nothing_kept_under(tmp_path / "a", tmp_path / "b")


# ---- moving a memory between the modes --------------------------------------------------------------
def _entities(assistant: Assistant, user: str) -> list[dict[str, Any]]:
    """What a move keeps: everything but where the photos live (their digests stay)."""
    return [
        {**e.model_dump(exclude={"photos"}), "photos": sorted(Path(p).stem for p in e.photos)}
        for e in assistant.entities(user=user)
    ]


def _photo_bytes(assistant: Assistant, user: str) -> dict[str, list[bytes]]:
    refs = assistant.parts.memory.references
    return {e.name: sorted(refs.read(user, e.id, p) for p in e.photos) for e in assistant.entities(user=user)}


def test_rcmu_export_and_import_move_a_memory_from_the_shared_store_to_a_folder_and_back(
    tmp_path: Path, shared_services: dict[str, str], faces_dir: Path, scenes: Path
) -> None:
    refs = _references(faces_dir)
    replica = _shared(tmp_path / "a", shared_services)
    for person in ("obama", "biden"):
        replica.remember(PEOPLE[person][0], info=PEOPLE[person][1], photos=refs[person], user="alice")
    before, photos = _entities(replica, "alice"), _photo_bytes(replica, "alice")
    assert photos["Joe Biden"] == sorted(p.read_bytes() for p in refs["biden"])

    out = subprocess.run(
        [RCMU, "export", str(tmp_path / "out"), "--user", "alice"],
        env=_env(tmp_path / "c", shared_services),  # a third, empty home
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    exported = [json.loads(line) for line in (tmp_path / "out" / "entities.jsonl").read_text().splitlines()]
    assert sum(len(line["photos"]) for line in exported) == 4
    assert all((tmp_path / "out" / p).read_bytes() in photos[line["name"]] for line in exported for p in line["photos"])

    folder = _embedded(tmp_path / "embedded")
    report = folder.import_memory(tmp_path / "out", user="alice", workers=0)
    assert (report.added, report.failed) == (2, [])
    assert _entities(folder, "alice") == before and _photo_bytes(folder, "alice") == photos
    assert all(Path(p).is_file() for e in folder.entities(user="alice") for p in e.photos)  # today's files
    assert _names(folder, scenes / "two_people.jpg", "alice") == ["Barack Obama", "Joe Biden"]
    folder.export_memory(tmp_path / "back", user="alice")

    for name in ("Barack Obama", "Joe Biden"):
        replica.forget(name, user="alice")
    assert _rows(shared_services["RCMU_DATABASE_URL"], "SELECT count(*) FROM rcmu_reference_photos") == [(0,)]
    back = subprocess.run(
        [RCMU, "import", str(tmp_path / "back"), "--user", "alice", "--workers", "0"],
        env=_env(tmp_path / "d", shared_services),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert back.returncode == 0, back.stderr[-2000:]
    assert _entities(replica, "alice") == before and _photo_bytes(replica, "alice") == photos
    assert all(p.startswith("ref:") for e in replica.entities(user="alice") for p in e.photos)
    assert _names(replica, scenes / "two_people.jpg", "alice") == ["Barack Obama", "Joe Biden"]
    _nothing_kept_under(tmp_path / "a", tmp_path / "c", tmp_path / "d")


# ---- stored strings are data ----------------------------------------------------------------------
def test_a_stored_string_names_a_photo_of_the_callers_entity_and_never_a_path(
    tmp_path: Path, postgres_url: str, faces_dir: Path
) -> None:
    data = _references(faces_dir)["obama"][0].read_bytes()
    digest = photo_digest(data)
    secret = tmp_path / "elsewhere" / f"{digest}.jpg"  # a file with the right name outside any home
    secret.parent.mkdir()
    secret.write_bytes(b"not yours")
    for home, url in ((tmp_path / "folder", None), (tmp_path / "shared", postgres_url)):
        refs, _ = memory_storage(home, url)
        stored, created = refs.put("alice", "e1", data, ".JPG")
        assert created and not refs.put("alice", "e1", data, ".jpg")[1]  # content-addressed: once
        assert stored == (f"ref:e1/{digest}.jpg" if url else str(home / "photos" / "alice" / "e1" / f"{digest}.jpg"))
        for same in (stored, f"{digest}.jpg", str(secret), f"ref:other/{digest}.jpg"):
            assert refs.read("alice", "e1", same) == data  # only the name counts, in the caller's entity
        for bad in ("/etc/passwd", "../../etc/passwd", f"ref:e1/../{digest}", f"{digest}.jpg/..", "", None, 7):
            with pytest.raises(NotFoundError, match="missing"):
                refs.read("alice", "e1", bad)
        for user, entity in (("bob", "e1"), ("alice", "e2")):
            with pytest.raises(NotFoundError, match="missing"):
                refs.read(user, entity, stored)
        refs.remove("alice", "e1", [digest])
        with pytest.raises(NotFoundError):
            refs.read("alice", "e1", stored)
    assert not (tmp_path / "shared").exists() and not (tmp_path / "folder" / "photos" / "alice" / "e1").exists()


def test_an_embedded_home_that_moved_still_reads_its_photos_by_their_old_paths(tmp_path: Path, faces_dir: Path) -> None:
    photo = _references(faces_dir)["obama"][0]
    store = MemoryStore(tmp_path / "old")
    entity = store.remember("alice", "Barack Obama", "info", "person", [ReferencePhoto(photo.read_bytes(), ".jpg")])
    (old_path,) = entity.photos
    assert old_path == str(tmp_path / "old" / "photos" / "alice" / entity.id / Path(old_path).name)
    (tmp_path / "old").rename(tmp_path / "new")
    moved = MemoryStore(tmp_path / "new")
    assert moved.get("alice", entity.id).photos == [old_path]  # the path of a folder that is gone
    assert moved.references.read("alice", entity.id, old_path) == photo.read_bytes()
    link = tmp_path / "new" / "photos" / "alice" / entity.id / Path(old_path).name
    link.unlink()
    link.symlink_to(photo)  # a link planted in the home is not followed
    with pytest.raises(NotFoundError, match="missing"):
        moved.references.read("alice", entity.id, old_path)
    moved.forget("alice", entity.id)
    assert not link.parent.exists()
