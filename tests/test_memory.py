"""The personal memory, for real: dlib faces, MiniLM, Chroma (embedded and a real server), real photos.

Every test goes through `Assistant` the way the CLI does and stops before the vision-language model
(`context_only=True`), so what is checked is exactly what the model would be given: which region is
who, and the numbered context lines of the prompt.
"""

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
from typing import Any

import pytest
from PIL import Image

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import (
    EmbeddingMismatchError,
    InvalidInputError,
    MemoryLockedError,
    NotFoundError,
    RcmuError,
)
from rcmu_agent.faces import FaceDetector, FaceEncoder
from rcmu_agent.memory import MemoryStore, ReferencePhoto
from rcmu_agent.schema import Answer, ContextEntry
from rcmu_agent.settings import Settings

# file-name person → (name to teach, info)
PEOPLE = {
    "alex_lacamoire": ("Alex Lacamoire", "Alex Lacamoire is the music director and orchestrator of Hamilton."),
    "biden": ("Joe Biden", "Joe Biden was the 46th president of the United States."),
    "kit_harington": ("Kit Harington", "Kit Harington played Jon Snow in Game of Thrones."),
    "obama": ("Barack Obama", "Barack Obama was the 44th president of the United States."),
    "rose_leslie": ("Rose Leslie", "Rose Leslie played Ygritte in Game of Thrones."),
}
OBAMA_X = (240, 420)  # two_people.jpg, documented x≈250–410
BIDEN_X = (770, 975)  # documented x≈780–965
QUESTION = "Who is in this photo?"


# ---- helpers --------------------------------------------------------------------------------------
def _settings(home: Path, **kwargs: Any) -> Settings:
    return Settings(home=home, object_detector=None, image_embedding_model=None, **kwargs)


def _assistant(home: Path, **kwargs: Any) -> Assistant:
    return Assistant(_settings(home, **kwargs))


def _references(faces_dir: Path) -> dict[str, list[Path]]:
    """reference/<person>_<n>.jpg grouped by person (the name before the last "_")."""
    out: dict[str, list[Path]] = {}
    for path in sorted((faces_dir / "reference").iterdir()):
        out.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    assert set(out) == set(PEOPLE), sorted(out)
    return out


def _teach(assistant: Assistant, faces_dir: Path, people: list[str], user: str | None = None) -> None:
    refs = _references(faces_dir)
    for person in people:
        name, info = PEOPLE[person]
        assistant.remember(name, info=info, photos=refs[person], user=user)


def _ask(assistant: Assistant, photo: Path, user: str | None = None) -> Answer:
    answer = assistant.ask(QUESTION, photo, user=user, context_only=True)
    assert answer.context_only and answer.text == ""
    return answer


def _by_x(answer: Answer) -> list[ContextEntry]:
    return sorted(answer.regions, key=lambda r: r.box[0] if r.box else 0.0)


def _info_lines(prompt: str) -> list[str]:
    return [line for line in prompt.splitlines() if line.startswith("[")]


def _files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "photos").rglob("*") if p.is_file())


def _snapshot(assistant: Assistant, user: str | None = None) -> list[dict[str, object]]:
    return [e.model_dump() for e in assistant.entities(user=user)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Assistant:
    """All five people taught once, from every reference photo, into one home for the module."""
    assistant = _assistant(tmp_path_factory.mktemp("five") / "home")
    _teach(assistant, faces_dir, list(PEOPLE))
    return assistant


@pytest.fixture()
def scenes(faces_dir: Path) -> Path:
    return faces_dir / "scenes"


# ---- recognition -----------------------------------------------------------------------------------
def test_teaching_stores_every_reference_photo(taught: Assistant, faces_dir: Path) -> None:
    refs = _references(faces_dir)
    entities = {e.name: e for e in taught.entities()}
    assert set(entities) == {name for name, _ in PEOPLE.values()}
    for person, (name, info) in PEOPLE.items():
        entity = entities[name]
        assert entity.info == info and entity.category == "person" and entity.user == "default"
        assert len(entity.photos) == len(refs[person])
        for photo in entity.photos:  # copies under home/photos/<user>/<entity id>/
            path = Path(photo)
            assert path.is_file() and path.parent == taught.settings.home / "photos" / "default" / entity.id
    assert len(_files(taught.settings.home)) == sum(len(v) for v in refs.values())


def test_two_people_is_obama_on_the_left_and_biden_on_the_right(taught: Assistant, scenes: Path) -> None:
    answer = _ask(taught, scenes / "two_people.jpg")
    assert len(answer.regions) == 2
    left, right = _by_x(answer)
    obama, biden = taught.parts.memory.get("default", "Barack Obama"), taught.parts.memory.get("default", "joe biden")

    assert left.name == "Barack Obama" and left.entity_id == obama.id and left.info == obama.info
    assert right.name == "Joe Biden" and right.entity_id == biden.id and right.info == biden.info
    assert left.box is not None and OBAMA_X[0] <= left.box[0] < left.box[2] <= OBAMA_X[1]
    assert right.box is not None and BIDEN_X[0] <= right.box[0] < right.box[2] <= BIDEN_X[1]
    assert left.category == right.category == "person"
    for entry in (left, right):
        assert entry.distance is not None and 0 <= entry.distance < taught.settings.face_threshold

    # numbered left to right: [1] is Obama's info, [2] Biden's, and nothing else is sent
    assert (left.index, right.index) == (1, 2)
    lines = _info_lines(answer.prompt)
    assert len(lines) == 2
    assert lines[0].startswith("[1]: The information of the person located at <|box_start|>(")
    assert lines[0].endswith(f"in the image: {PEOPLE['obama'][1]}")
    assert lines[1].startswith("[2]: ") and lines[1].endswith(f"in the image: {PEOPLE['biden'][1]}")
    assert answer.prompt.splitlines()[-1] == QUESTION
    for person in ("alex_lacamoire", "kit_harington", "rose_leslie"):
        assert PEOPLE[person][1] not in answer.prompt


@pytest.mark.parametrize(("photo", "person"), [("obama1.jpg", "obama"), ("alex_lacamoire1.jpg", "alex_lacamoire")])
def test_a_new_photo_of_a_taught_person_is_recognised(taught: Assistant, scenes: Path, photo: str, person: str) -> None:
    name, info = PEOPLE[person]
    answer = _ask(taught, scenes / photo)
    assert [(r.name, r.index, r.info) for r in answer.regions] == [(name, 1, info)]
    lines = _info_lines(answer.prompt)
    assert len(lines) == 1 and lines[0].startswith("[1]: ") and lines[0].endswith(info)


def test_memory_question_without_a_photo_cites_the_named_person(taught: Assistant) -> None:
    answer = taught.ask("What role did Rose play?", context_only=True)
    assert any(r.name == "Rose Leslie" and r.index is not None for r in answer.regions)
    assert PEOPLE["rose_leslie"][1].rstrip(".") in answer.prompt


def test_a_person_never_taught_stays_unknown(tmp_path: Path, faces_dir: Path, scenes: Path) -> None:
    assistant = _assistant(tmp_path / "home")
    _teach(assistant, faces_dir, [p for p in PEOPLE if p != "obama"])

    answer = _ask(assistant, scenes / "obama1.jpg")
    assert len(answer.regions) == 1
    region = answer.regions[0]
    assert (region.name, region.entity_id, region.index, region.info, region.distance) == (None,) * 5
    assert region.box is not None  # reported, but not sent as context
    assert _info_lines(answer.prompt) == []  # never another person's info
    for _, info in PEOPLE.values():
        assert info.rstrip(".") not in answer.prompt

    # with Biden beside him, only Biden is named and he becomes [1]
    left, right = _by_x(_ask(assistant, scenes / "two_people.jpg"))
    assert (left.name, left.index) == (None, None)
    assert (right.name, right.index) == ("Joe Biden", 1)


# ---- users ----------------------------------------------------------------------------------------
def test_users_never_see_each_others_memory(tmp_path: Path, faces_dir: Path, scenes: Path) -> None:
    assistant = _assistant(tmp_path / "home")
    refs = _references(faces_dir)
    alice_biden = assistant.remember("Joe Biden", info=PEOPLE["biden"][1], photos=refs["biden"][:1], user="alice")
    bob_obama = assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=refs["obama"][:1], user="bob")
    assert alice_biden.user == "alice" and bob_obama.user == "bob"

    as_bob = _by_x(_ask(assistant, scenes / "two_people.jpg", user="bob"))
    assert [(r.name, r.index) for r in as_bob] == [("Barack Obama", 1), (None, None)]
    as_alice = _by_x(_ask(assistant, scenes / "two_people.jpg", user="alice"))
    assert [(r.name, r.index) for r in as_alice] == [(None, None), ("Joe Biden", 1)]
    as_default = _ask(assistant, scenes / "two_people.jpg")  # the default user always exists, knows no one
    assert [r.name for r in as_default.regions] == [None, None] and _info_lines(as_default.prompt) == []

    assert [e.name for e in assistant.entities(user="bob")] == ["Barack Obama"]
    assert [e.name for e in assistant.entities(user="alice")] == ["Joe Biden"]
    assert assistant.entities() == []
    with pytest.raises(NotFoundError):
        assistant.forget("Joe Biden", user="bob")  # alice's entity, not bob's
    assert [e.name for e in assistant.entities(user="alice")] == ["Joe Biden"]

    # carol taught nothing: her memory is empty (answers name nobody), and no message names other users
    as_carol = assistant.ask(QUESTION, scenes / "two_people.jpg", user="carol", context_only=True)
    assert [r.name for r in as_carol.regions] == [None, None] and _info_lines(as_carol.prompt) == []
    assert assistant.entities(user="carol") == []
    with pytest.raises(NotFoundError) as err:
        assistant.forget("Joe Biden", user="carol")
    assert "alice" not in str(err.value) and "bob" not in str(err.value)
    assert assistant.parts.memory.users() == ["alice", "bob"]


# ---- updating and forgetting ------------------------------------------------------------------------
def test_remembering_again_updates_and_forget_removes_everything(tmp_path: Path, faces_dir: Path, scenes: Path) -> None:
    home = tmp_path / "home"
    assistant = _assistant(home)
    first, second = _references(faces_dir)["obama"]
    created = assistant.remember("Barack Obama", info="The 44th US president.", photos=[first])
    assert len(created.photos) == 1

    updated = assistant.remember("barack  OBAMA", info="He likes basketball.", photos=[second])
    assert updated.id == created.id and updated.created_at == created.created_at
    assert updated.info == "He likes basketball." and updated.name == "barack OBAMA"
    assert len(updated.photos) == 2 and set(created.photos) < set(updated.photos)
    again = assistant.remember("Barack Obama", info="He likes basketball.", photos=[first])  # same photo: no copy
    assert len(again.photos) == 2 and len(_files(home)) == 2
    assert [e.id for e in assistant.entities()] == [created.id]

    answer = _ask(assistant, scenes / "obama1.jpg")
    assert [r.entity_id for r in answer.regions] == [created.id]
    assert "He likes basketball" in answer.prompt and "44th" not in answer.prompt

    with pytest.raises(InvalidInputError, match="already remembered as a person") as err:
        assistant.remember("Barack Obama", info="A dog.", category="Dog")
    assert "--category person" in err.value.fix
    assert [(e.id, e.category, len(e.photos)) for e in assistant.entities()] == [(created.id, "person", 2)]

    forgotten = assistant.forget("BARACK OBAMA")
    assert forgotten.id == created.id
    assert assistant.entities() == []
    assert _files(home) == [] and not (home / "photos" / "default" / created.id).exists()
    assert assistant.parts.memory._col("faces").count() == 0  # no vector left behind
    answer = _ask(assistant, scenes / "obama1.jpg")
    assert [(r.name, r.entity_id) for r in answer.regions] == [(None, None)] and _info_lines(answer.prompt) == []
    with pytest.raises(NotFoundError, match="no entity"):
        assistant.forget("Barack Obama")


# ---- bad input ------------------------------------------------------------------------------------
def test_bad_input_loses_nothing(tmp_path: Path, faces_dir: Path, shared_data: Path) -> None:
    home = tmp_path / "home"
    assistant = _assistant(home)
    refs = _references(faces_dir)
    good = refs["obama"][0]
    assistant.remember("Joe Biden", info=PEOPLE["biden"][1], photos=refs["biden"][:1])
    before, files, vectors = _snapshot(assistant), _files(home), assistant.parts.memory._col("faces").count()

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:4000])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a photo")
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"photos": [good, shared_data / "objects" / "rocket.jpg"]}, InvalidInputError, "no face"),
        ({"photos": [good, truncated]}, InvalidInputError, "corrupt or truncated"),
        ({"photos": [good, garbage]}, InvalidInputError, "not an image"),
        ({"photos": [good, tmp_path / "missing.jpg"]}, NotFoundError, "does not exist"),
        ({"photos": [good], "name": "   "}, InvalidInputError, "name is empty"),
        ({"photos": [good], "info": ""}, InvalidInputError, "info is empty"),
        ({"photos": [good], "user": "../etc"}, InvalidInputError, "user id"),
        ({"photos": [good], "user": "bad user"}, InvalidInputError, "user id"),
        ({"photos": [good], "user": ""}, InvalidInputError, "user id"),
    ]
    for overrides, error, message in cases:
        kwargs: dict[str, Any] = {"name": "Barack Obama", "info": PEOPLE["obama"][1], **overrides}
        name = kwargs.pop("name")
        with pytest.raises(error, match=message):
            assistant.remember(name, **kwargs)
        assert _snapshot(assistant) == before, overrides
        assert _files(home) == files, overrides
        assert assistant.parts.memory._col("faces").count() == vectors, overrides
    assert not (home / "memory.journal").exists()

    with pytest.raises(InvalidInputError, match="user id"):
        assistant.ask(QUESTION, good, user="no/such", context_only=True)
    with pytest.raises(InvalidInputError, match="question is empty"):
        assistant.ask("  ", good, context_only=True)


# ---- crashes --------------------------------------------------------------------------------------
def test_an_interrupted_write_rolls_back_and_keeps_what_was_there(
    tmp_path: Path, faces_dir: Path, scenes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    assistant = _assistant(home)
    first, second = _references(faces_dir)["obama"]
    obama = assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[first])
    memory = assistant.parts.memory
    before, files = _snapshot(assistant), _files(home)

    def interrupt(texts: object) -> object:  # the entity row is written last: this is after the vectors
        raise KeyboardInterrupt

    monkeypatch.setattr(memory._text, "embed", interrupt)
    with pytest.raises(KeyboardInterrupt):  # a new person
        assistant.remember("Joe Biden", info=PEOPLE["biden"][1], photos=_references(faces_dir)["biden"])
    with pytest.raises(KeyboardInterrupt):  # an update that re-sends the photo Obama already has
        assistant.remember("Barack Obama", info="new info", photos=[first, second])
    monkeypatch.undo()

    assert _snapshot(assistant) == before and _files(home) == files
    assert memory._col("faces").count() == 1 and not (home / "memory.journal").exists()
    answer = _ask(assistant, scenes / "two_people.jpg")  # Obama still has his reference; Biden never landed
    assert [(r.name, r.entity_id) for r in _by_x(answer)] == [("Barack Obama", obama.id), (None, None)]


KILLED_WRITE = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from rcmu_agent.memory import MemoryStore, ReferencePhoto

    home, photo, descriptor = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    store = MemoryStore(Path(home))
    store._update_profile = lambda *args: os._exit(9)  # killed after the vectors, before the entity row
    store.remember("default", "Barack Obama", "info", "person",
                   [ReferencePhoto(photo.read_bytes(), photo.suffix, face_descriptor=descriptor)])
    """
)


def test_a_killed_write_leaves_nothing_that_matches_and_the_next_write_cleans_up(
    tmp_path: Path, faces_dir: Path, scenes: Path
) -> None:
    home = tmp_path / "home"
    photo = _references(faces_dir)["obama"][0]
    with Image.open(photo) as img:
        image = img.convert("RGB")
    descriptor = FaceEncoder().encode(image, FaceDetector().detect(image))[0].descriptor
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(home), str(photo), json.dumps(descriptor)],
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the repository root, whose bare rcmu_agent/ folder would shadow the installed package
    )
    assert killed.returncode == 9, killed.stderr[-2000:]
    # what the killed process left: its journal, a photo copy and a face vector, but no entity row
    intent = json.loads((home / "memory.journal").read_text())
    ((entity_id, digests),) = intent["entities"].items()
    assert intent["user"] == "default" and len(_files(home)) == 1 and digests[0] in _files(home)[0].name

    assistant = _assistant(home)
    memory = assistant.parts.memory
    assert memory._col("faces").count() == 1
    assert assistant.entities() == [] and memory.users() == []
    answer = _ask(assistant, scenes / "obama1.jpg")  # the orphan vector is the nearest, but matches no one
    assert [(r.name, r.entity_id, r.index) for r in answer.regions] == [(None, None, None)]
    assert _info_lines(answer.prompt) == []

    biden = assistant.remember("Joe Biden", info=PEOPLE["biden"][1], photos=_references(faces_dir)["biden"][:1])
    assert not (home / "memory.journal").exists()
    assert memory._col("faces").get(include=[])["ids"] == [f"{biden.id}:{Path(biden.photos[0]).stem}"]
    assert _files(home) == [Path(biden.photos[0])]  # the orphan copy is gone too
    assert not (home / "photos" / "default" / entity_id).exists()
    assert [e.name for e in assistant.entities()] == ["Joe Biden"]


# ---- configuration guards -------------------------------------------------------------------------
def test_reopening_with_another_image_model_is_refused(tmp_path: Path, shared_data: Path) -> None:
    home = tmp_path / "home"
    photo = shared_data / "objects" / "chelsea.png"
    built = MemoryStore(home, image_model="clip-a")
    cat = built.remember(
        "default", "Chelsea", "My cat.", "cat", [ReferencePhoto(photo.read_bytes(), ".png", image_embedding=[1, 0, 0])]
    )
    assert built.match_objects("default", [[1, 0, 0]], ["cat"], 0.9)[0] is not None

    other = MemoryStore(home, image_model="other")
    with pytest.raises(EmbeddingMismatchError) as err:
        other.match_objects("default", [[1, 0, 0]], ["cat"], 0.9)
    message = str(err.value)
    assert "\n" not in message and "'clip-a'" in message and "'other'" in message and err.value.fix
    with pytest.raises(EmbeddingMismatchError):  # a write with the wrong model is refused and undone
        other.remember("default", "Chelsea", "Changed.", "cat", [ReferencePhoto(b"x", ".png", image_embedding=[0, 1])])
    assert [(e.id, e.info, e.photos) for e in other.entities("default")] == [(cat.id, "My cat.", cat.photos)]
    assert _files(home) == [Path(cat.photos[0])]


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from filelock import FileLock

    with FileLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_writer_gets_a_clear_lock_error(tmp_path: Path, faces_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(home / "memory.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assistant = _assistant(home, lock_timeout=0.5)
        photo = _references(faces_dir)["obama"][0]
        start = time.monotonic()
        with pytest.raises(MemoryLockedError) as err:
            assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[photo])
        assert time.monotonic() - start < 30
        assert str(home) in err.value.problem and "RCMU_LOCK_TIMEOUT" in err.value.fix
        assert assistant.entities() == [] and not (home / "photos").exists()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[photo]).name == "Barack Obama"


def test_a_writer_thread_waits_for_the_lock_then_fails_clearly(tmp_path: Path) -> None:
    """Two threads of one process: the second waits `lock_timeout` for the first, never interleaves."""
    from rcmu_agent.memory._client import write_lock

    home = tmp_path / "home"
    home.mkdir()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_lock(home, 5):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        store = MemoryStore(home, lock_timeout=0.3)
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
