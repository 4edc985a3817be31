"""The personal memory, for real: dlib faces, MiniLM, Chroma (embedded and a real server), real photos.

Every test goes through `Assistant` the way the CLI does and stops before the vision-language model
(`context_only=True`), so what is checked is exactly what the model would be given: which region is
who, and the numbered context lines of the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _memory_helpers import PEOPLE, QUESTION, _ask, _assistant, _by_x, _files, _info_lines, _references, _snapshot

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import InvalidInputError, NotFoundError

pytestmark = pytest.mark.integration  # dlib faces, MiniLM and Chroma, for real

OBAMA_X = (240, 420)  # two_people.jpg, documented x≈250–410
BIDEN_X = (770, 975)  # documented x≈780–965


def _teach(assistant: Assistant, faces_dir: Path, people: list[str], user: str | None = None) -> None:
    refs = _references(faces_dir)
    for person in people:
        name, info = PEOPLE[person]
        assistant.remember(name, info=info, photos=refs[person], user=user)


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Assistant:
    """All five people taught once, from every reference photo, into one home for the module."""
    assistant = _assistant(tmp_path_factory.mktemp("five") / "home")
    _teach(assistant, faces_dir, list(PEOPLE))
    return assistant


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
    assert (region.name, region.entity_id, region.info, region.distance) == (None,) * 4
    assert region.index == 1  # numbered, so a person can say who it is ("[1] is Rose")
    assert region.box is not None  # reported, but not sent as context
    assert _info_lines(answer.prompt) == []  # never another person's info
    for _, info in PEOPLE.values():
        assert info.rstrip(".") not in answer.prompt

    # with Biden beside him, only Biden is named and he becomes [1]
    left, right = _by_x(_ask(assistant, scenes / "two_people.jpg"))
    assert (left.name, left.index) == (None, 2)  # unknown regions are numbered after the known ones
    assert (right.name, right.index) == ("Joe Biden", 1)


# ---- users ----------------------------------------------------------------------------------------
def test_users_never_see_each_others_memory(tmp_path: Path, faces_dir: Path, scenes: Path) -> None:
    assistant = _assistant(tmp_path / "home")
    refs = _references(faces_dir)
    alice_biden = assistant.remember("Joe Biden", info=PEOPLE["biden"][1], photos=refs["biden"][:1], user="alice")
    bob_obama = assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=refs["obama"][:1], user="bob")
    assert alice_biden.user == "alice" and bob_obama.user == "bob"

    as_bob = _by_x(_ask(assistant, scenes / "two_people.jpg", user="bob"))
    assert [(r.name, r.index) for r in as_bob] == [("Barack Obama", 1), (None, 2)]
    as_alice = _by_x(_ask(assistant, scenes / "two_people.jpg", user="alice"))
    assert [(r.name, r.index) for r in as_alice] == [(None, 2), ("Joe Biden", 1)]
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
