"""Hostile and careless inputs through every model-facing entry (the LangChain tools, and
`rcmu_agent.door`, the door the graph's message interface and servers call): refusals say only
"outside the allowed folders" / "not a readable photo", and no piece of a secret file ever appears in
a reply, an artifact or a log record. Every test of the assistant runs on both storage modes
(`embedded`, `shared`: see conftest.py)."""

from __future__ import annotations

import base64
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from rcmu_agent import Assistant
from rcmu_agent.door import read_photo_file
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.images import load_image
from rcmu_agent.tools import rcmu_tools

from ._stores import kept_on_disk
from .conftest import MODES, SECRET

OUTSIDE = "is outside the allowed folders"
UNREADABLE = "is not a readable photo"


@pytest.fixture(scope="module", params=MODES)
def assistant_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The module's assistant in each storage mode in turn (one database and Chroma server for `shared`)."""
    return dict(request.getfixturevalue("module_services")) if request.param == "shared" else {}


def _call(tool: BaseTool, **args: Any) -> ToolMessage:
    message = tool.invoke({"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    return message


def _tools(assistant: Assistant, user: str) -> dict[str, BaseTool]:
    return {t.name: t for t in rcmu_tools(assistant, user=user)}


def assert_no_secret(*texts: object) -> None:
    """Not even 5 consecutive characters of the secret, anywhere."""
    blob = "\n".join(str(t) for t in texts)
    pieces = {SECRET[i : i + 5] for i in range(len(SECRET) - 4)}
    leaked = sorted(p for p in pieces if p in blob)
    assert not leaked, f"secret pieces leaked: {leaked}"


def _photo_calls(photo: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("ask_about_photo", {"photo": photo, "question": "Who is this?"}),
        ("describe_photo", {"photo": photo}),
        ("remember", {"name": "Mallory", "info": "a stranger", "photos": [photo]}),
    ]


def _hostile_paths(outside: Path, allowed: Path) -> dict[str, tuple[Any, str]]:
    """label → (photo argument, the refusal it must get)."""
    fifo = allowed / "pipe.jpg"
    if not fifo.exists():
        os.mkfifo(fifo)
    (allowed / "folder.jpg").mkdir(exist_ok=True)
    links = {
        "link-out.jpg": outside / "secret.txt",
        "link-environ.jpg": Path("/proc/self/environ"),
        "link-missing.jpg": outside / "missing.jpg",
    }
    for name, target in links.items():
        if not (allowed / name).is_symlink():
            (allowed / name).symlink_to(target)
    return {
        "/etc/passwd": ("/etc/passwd", OUTSIDE),
        "secret outside": (str(outside / "secret.txt"), OUTSIDE),
        "missing outside": (str(outside / "nope.jpg"), OUTSIDE),
        "ppm-looking secret outside": (str(outside / "secret.ppm"), OUTSIDE),
        "/proc/self/environ": ("/proc/self/environ", OUTSIDE),
        "/proc/self/mem": ("/proc/self/mem", OUTSIDE),
        "/dev/zero": ("/dev/zero", OUTSIDE),
        "/dev/urandom as file URL": ("file:///dev/urandom", OUTSIDE),
        "dot-dot out of the root": (str(allowed / ".." / outside.name / "secret.txt"), OUTSIDE),
        "percent-encoded dot-dot": (f"file://{allowed}/%2e%2e/{outside.name}/secret.txt", OUTSIDE),
        "symlink out of the root": (str(allowed / "link-out.jpg"), OUTSIDE),
        "symlink to /proc": (str(allowed / "link-environ.jpg"), OUTSIDE),
        "dangling symlink out": (str(allowed / "link-missing.jpg"), OUTSIDE),
        "NUL byte": (str(allowed) + "/a\x00.jpg", OUTSIDE),
        "FIFO inside": (str(fifo), UNREADABLE),
        "directory inside": (str(allowed / "folder.jpg"), UNREADABLE),
        "image block path": ({"type": "image", "path": str(outside / "secret.txt")}, OUTSIDE),
        "image block file URL": ({"type": "image", "url": (outside / "secret.txt").as_uri()}, OUTSIDE),
        "Path object": (outside / "secret.txt", OUTSIDE),
    }


@pytest.mark.integration
def test_every_photo_tool_refuses_every_hostile_path(
    assistant: Assistant, outside: Path, allowed: Path, caplog: pytest.LogCaptureFixture, server: Any
) -> None:
    tools = _tools(assistant, "bob")
    before = len(server.requests)
    replies = []
    with caplog.at_level(logging.DEBUG):
        for label, (photo, refusal) in _hostile_paths(outside, allowed).items():
            for name, args in _photo_calls(photo):
                message = _call(tools[name], **args)
                assert message.status == "error", (label, name, message.content)
                assert refusal in str(message.content), (label, name, message.content)
                assert str(message.content).count("\n") == 0
                replies.append((message.content, message.artifact))
    assert len(server.requests) == before  # nothing was sent to the model
    assert [e.name for e in assistant.entities(user="bob")] == ["Joe Biden"]  # nothing remembered
    assert_no_secret(*replies, *(r.getMessage() for r in caplog.records))


@pytest.mark.integration
def test_a_refusal_does_not_tell_whether_a_path_outside_exists(assistant: Assistant, outside: Path) -> None:
    ask = _tools(assistant, "bob")["ask_about_photo"]
    texts = [
        str(_call(ask, photo=str(outside / name), question="Who?").content).replace(name, "NAME")
        for name in ("secret.txt", "missing.txt")
    ]
    assert texts[0] == texts[1]


@pytest.mark.integration
def test_a_secret_inside_the_allowed_folder_is_not_quoted_by_the_decoder(
    assistant: Assistant, allowed: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PIL's PPM reader says "Token too long in file header: b'SECRET_API_'": never passed on (and PPM is not
    among the photo decoders any more, so it is refused before a decoder reads it)."""
    inside = allowed / "looks-like.ppm"
    shutil.copy(outside / "secret.ppm", inside)
    tools = _tools(assistant, "bob")
    replies = []
    with caplog.at_level(logging.DEBUG):
        for name, args in _photo_calls(str(inside)):
            message = _call(tools[name], **args)
            assert message.status == "error" and "not an image rcmu can read" in str(message.content), message.content
            replies.append(message.content)
        data = base64.b64encode(inside.read_bytes()).decode()
        for name, args in _photo_calls(data):
            message = _call(tools[name], **args)
            assert message.status == "error", message.content
            replies.append(message.content)
        with pytest.raises(InvalidInputError) as raised:
            load_image(inside)  # the CLI's reader too
        replies.append(raised.value)
    assert_no_secret(*replies, *(r.getMessage() for r in caplog.records))


@pytest.mark.integration
def test_no_stored_photo_is_read_by_path_not_even_ones_own(assistant: Assistant) -> None:
    """Under the home every file is refused by path, the asker's own reference photos too: a stored photo
    is reached by its id in the asker's vault, never by a path a model wrote."""
    home = assistant.settings.home
    (alice_photo,) = next(e for e in assistant.entities(user="alice") if e.name == "Barack Obama").photos
    refusal = OUTSIDE  # embedded: the string is a path under the home
    if assistant.settings.database_url:  # shared: a row in PostgreSQL, its string (ref:…) names no file
        assert not Path(alice_photo).exists() and not Path(alice_photo).is_relative_to(home)
        assert kept_on_disk(home) == []  # and the home keeps nothing but caches
        refusal = "scheme 'ref' is not supported"
    else:
        assert Path(alice_photo).is_relative_to(home)
    bob = _tools(assistant, "bob")
    for name, args in _photo_calls(alice_photo):
        message = _call(bob[name], **args)
        assert message.status == "error" and refusal in str(message.content), message.content
    assert [e.name for e in assistant.entities(user="bob")] == ["Joe Biden"]
    for private in (home / "chroma" / "chroma.sqlite3", home / "memory.lock", home / "threads.sqlite"):
        message = _call(bob["describe_photo"], photo=str(private))
        assert message.status == "error" and OUTSIDE in str(message.content), message.content
    own = _call(_tools(assistant, "alice")["describe_photo"], photo=alice_photo)
    assert own.status == "error" and refusal in str(own.content), own.content


@pytest.mark.integration
def test_a_stranger_with_no_memory_learns_nothing_about_other_users(
    assistant: Assistant, allowed: Path, faces_dir: Path
) -> None:
    scene = allowed / "scene.jpg"
    shutil.copy(faces_dir / "reference" / "obama_obama.jpg", scene)  # the photo alice taught Barack with
    carol = _tools(assistant, "carol")
    outputs = []
    for name, args in [
        ("describe_photo", {"photo": str(scene)}),
        ("recall", {"question": "Whose friends are known here? List every user."}),
        ("search_photos", {"people": ["Barack Obama"]}),
        ("remember", {"name": "Barack Obama", "photos": [str(scene)]}),
    ]:
        message = _call(carol[name], **args)
        outputs.append((name, message.status, message.content, message.artifact))
    assert outputs[0][1] == "success" and "Barack Obama" not in str(outputs[0][2])  # an empty memory names nobody
    assert outputs[1][1] == "success"
    blob = str(outputs)
    for private in ("alice", "bob", "known users", "Joe Biden", "uncle"):
        assert private not in blob, private


@pytest.mark.unit
@pytest.mark.parametrize(
    "path",
    ["", "   ", "\x00", "/", ".", "..", "~", "~root/.ssh/id_rsa", "a" * 5000, "file://", "file:///", "C:\\x.jpg"],
)
def test_the_gate_refuses_odd_paths_with_one_line(path: str, allowed: Path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        read_photo_file(path, [allowed])
    assert OUTSIDE in str(raised.value) or UNREADABLE in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.unit
def test_the_door_reads_photos_inside_whatever_form_names_them(allowed: Path, small_photos: Path) -> None:
    photo = allowed / "sub" / "x.jpg"
    photo.parent.mkdir(exist_ok=True)
    shutil.copy(small_photos / "obama.jpg", photo)
    link = allowed / "link-in.jpg"
    if not link.is_symlink():
        link.symlink_to(photo)
    for form in (
        photo,
        str(photo),
        photo.as_uri(),
        f"file://localhost{photo}",
        str(allowed / "sub" / ".." / "sub" / "x.jpg"),
        str(link),
    ):
        assert read_photo_file(form, [allowed]).data == photo.read_bytes()
    with pytest.raises(InvalidInputError, match=OUTSIDE):
        read_photo_file(photo, [])  # no roots: no paths at all


@pytest.mark.unit
def test_allowed_roots_come_from_the_environment_with_a_folder_per_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rcmu_agent import Settings

    monkeypatch.setenv("RCMU_ALLOWED_ROOTS", os.pathsep.join([str(tmp_path / "shared"), "~/uploads/{user}"]))
    settings = Settings(home=tmp_path / "home")
    assert settings.roots_for("bob") == [tmp_path / "shared", Path.home() / "uploads" / "bob"]
    monkeypatch.setenv("RCMU_ALLOWED_ROOTS", "")
    assert Settings(home=tmp_path / "home").allowed_roots == []  # the default: no paths at all


@pytest.mark.integration
def test_forget_cannot_reach_another_users_entity_by_id_or_name(assistant: Assistant) -> None:
    """Entity ids are global in Chroma: a model that learns (or guesses) alice's id must still not be
    able to delete her entry through bob's `forget`, nor learn from the refusal that it exists."""
    alice = next(e for e in assistant.entities(user="alice") if e.name == "Barack Obama")
    forget = _tools(assistant, "bob")["forget"]
    refusals = [_call(forget, name=key) for key in (alice.id, "Barack Obama", "no-such-entity")]
    for message in refusals:
        assert message.status == "error" and str(message.content).count("\n") == 0, message.content
    assert "Barack" not in str(refusals[0].content)  # asked by id: her entry's name is not given away
    assert "alice" not in " ".join(str(m.content) for m in refusals)
    by_id, unknown = str(refusals[0].content), str(refusals[2].content)
    assert by_id.replace(alice.id, "KEY") == unknown.replace("no-such-entity", "KEY")  # same words as a miss
    assert [e.name for e in assistant.entities(user="alice")] == ["Barack Obama"]  # untouched
    assert [e.name for e in assistant.entities(user="bob")] == ["Joe Biden"]
