"""Every way a host can hand over a photo reaches the model as the same pixels, and every form that
cannot be used locally is refused with what to send instead."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import ToolMessage
from PIL import Image

from rcmu_agent import Assistant
from rcmu_agent.errors import InvalidInputError, RcmuError
from rcmu_agent.images import load_image
from rcmu_agent.photos import Inbound, PhotoAccess, to_photo
from rcmu_agent.testing import FakeServer
from rcmu_agent.tools import AskAboutPhotoTool, DescribePhotoTool
from rcmu_agent.visual_budget import fit_to_budget, jpeg_data_url


def forms(scene: Path) -> dict[str, Any]:
    data = scene.read_bytes()
    b64 = base64.b64encode(data).decode()
    return {
        "path": str(scene),
        "Path object": scene,
        "relative path": os.path.relpath(scene),
        "file URL": scene.as_uri(),
        "file://localhost URL": "file://localhost" + scene.as_uri().removeprefix("file://"),
        "bytes": data,
        "base64": b64,
        "base64 with line breaks": "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)),
        "url-safe base64 without padding": base64.urlsafe_b64encode(data).decode().rstrip("="),
        "data URL": f"data:image/jpeg;base64,{b64}",
        "v0 base64 block": {"type": "image", "source_type": "base64", "data": b64, "mime_type": "image/jpeg"},
        "v1 base64 block": {"type": "image", "base64": b64, "mime_type": "image/jpeg"},
        "v1 url block (data URL)": {"type": "image", "url": f"data:image/jpeg;base64,{b64}"},
        "v0 url block (file URL)": {"type": "image", "source_type": "url", "url": scene.as_uri()},
        "image_url block": {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64}"}},
        "image_url block, bare string": {"type": "image_url", "image_url": scene.as_uri()},
        "anthropic-style block": {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": b64},
        },
    }


def _pixels(data_url: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as sent:
        return np.asarray(sent.convert("RGB"))


@pytest.mark.integration
def test_every_photo_form_reaches_the_model_as_the_same_pixels(
    assistant: Assistant, scene: Path, server: FakeServer
) -> None:
    """A caller region skips detection, so this checks transport alone; recognition on decoded bytes is
    checked below and in test_tools (base64 blocks teach, paths ask)."""
    tool = AskAboutPhotoTool(assistant=assistant, user="alice")
    region = {"box": [253, 47, 409, 203], "info": "A man in a suit"}
    expected = _pixels(jpeg_data_url(fit_to_budget(load_image(scene))))  # the budget-sized JPEG, every time
    for label, photo in forms(scene).items():
        before = len(server.requests)
        args = {"photo": photo, "question": "Who is <region1>?", "regions": [region]}
        message = tool.invoke({"name": tool.name, "args": args, "id": "c", "type": "tool_call"})
        assert isinstance(message, ToolMessage) and message.status == "success", (label, message.content)
        (request,) = server.requests[before:]
        image_part, text_part = request.body["messages"][0]["content"]
        assert np.array_equal(_pixels(image_part["image_url"]["url"]), expected), label
        assert text_part["text"].startswith("[1]: The information of the person located at <|box_start|>(224,71)")


@pytest.mark.integration
def test_bytes_are_recognised_and_kept_once_in_the_users_vault(assistant: Assistant, scene: Path) -> None:
    tool = DescribePhotoTool(assistant=assistant, user="alice")
    first = tool.invoke({"photo": scene.read_bytes()})
    assert isinstance(first, str)  # invoked without a tool call: the content alone
    assert "[1] = Barack Obama (person) at (253,47,409,203)" in first
    vault = assistant.settings.home / "vault" / "alice"  # one vault per user
    saved = sorted(p for p in vault.rglob("*") if p.is_file())
    again = tool.invoke({"photo": base64.b64encode(scene.read_bytes()).decode()})
    assert again == first
    assert sorted(p for p in vault.rglob("*") if p.is_file()) == saved and len(saved) == 1  # same content, same file
    assert saved[0].read_bytes() == scene.read_bytes()  # the bytes as sent: nothing re-encoded


@pytest.mark.unit
@pytest.mark.parametrize(
    ("photo", "error", "message"),
    [
        ("https://example.com/cat.jpg", InvalidInputError, "is a remote URL; the tools never download"),
        ("HTTP://EXAMPLE.COM/CAT.JPG", InvalidInputError, "is a remote URL"),
        ("s3://bucket/cat.jpg", InvalidInputError, "is a remote URL"),
        ("ftp://host/cat.jpg", InvalidInputError, "is a remote URL"),
        ("gopher://host/cat.jpg", InvalidInputError, "scheme 'gopher' is not supported"),
        ("file://otherhost/tmp/cat.jpg", InvalidInputError, "names another host (otherhost)"),
        ("file:///no/such/cat.jpg", InvalidInputError, "photo '/no/such/cat.jpg' is outside the allowed folders"),
        ("cat.jpg", InvalidInputError, "photo 'cat.jpg' is outside the allowed folders"),
        ("", InvalidInputError, "photo is empty"),
        (b"", InvalidInputError, "photo is empty (0 bytes)"),
        ("data:text/plain;base64,aGVsbG8=", InvalidInputError, "holds text/plain, not an image"),
        ("data:image/png,rawdata", InvalidInputError, "is not base64-encoded"),
        ("data:image/png;base64", InvalidInputError, "has no ',' before its data"),
        ("data:image/png;base64,abc$def", InvalidInputError, "looks like base64 but does not decode"),
        ("QUJD" * 10 + "Q", InvalidInputError, "looks like base64 but does not decode"),  # one char too many
        ({"type": "image", "file_id": "file-abc123"}, InvalidInputError, "provider file id"),
        ({"type": "image", "source_type": "id", "id": "file-abc123"}, InvalidInputError, "provider file id"),
        (
            {"type": "image", "base64": "aGVsbG8=", "mime_type": "application/pdf"},
            InvalidInputError,
            "holds application/pdf",
        ),
        ({"type": "text", "text": "a cat"}, InvalidInputError, "content block of type 'text' is not an image"),
        ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, InvalidInputError, "remote URL"),
        ({"type": "image", "url": "https://example.com/a.png"}, InvalidInputError, "remote URL"),
        ({"type": "image"}, InvalidInputError, "image block has no data"),
        ({"type": "image", "base64": 42}, InvalidInputError, "image block has no base64 data"),
        (12345, InvalidInputError, "photo of type int is not understood"),
        ("A" * 5000 + "!", InvalidInputError, "is outside the allowed folders"),  # not base64 either
    ],
)
def test_unusable_photo_forms_are_refused_with_a_fix(photo: Any, error: type[RcmuError], message: str) -> None:
    with pytest.raises(error) as raised:
        to_photo(photo)
    assert message in str(raised.value)
    assert raised.value.fix  # every refusal says what to do instead


@pytest.mark.unit
def test_a_directory_is_not_a_photo(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is not a readable photo"):
        to_photo(str(tmp_path), PhotoAccess(roots=[tmp_path]))


@pytest.mark.unit
def test_a_typo_in_a_real_folder_is_not_a_readable_photo_nor_base64(tmp_path: Path) -> None:
    """Folder names can be all base64 characters; inside an allowed folder it is a path with a typo."""
    with pytest.raises(InvalidInputError, match="is not a readable photo"):
        to_photo(str(tmp_path / "IMG_0001.holiday_photo_of_the_beach"), PhotoAccess(roots=[tmp_path]))


@pytest.mark.unit
def test_a_path_that_exists_wins_over_base64(
    tmp_path: Path, small_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose name happens to be valid base64 is still read as a file."""
    scene = small_photos / "two_people.jpg"
    name = tmp_path / ("QUJD" * 10)
    name.write_bytes(scene.read_bytes())
    assert to_photo(str(name), PhotoAccess(roots=[tmp_path])).data == scene.read_bytes()
    monkeypatch.chdir(tmp_path)  # the same text wherever the temp folder is, however long its path
    assert to_photo(name.name, PhotoAccess(roots=[tmp_path])).data == scene.read_bytes()
    sent = to_photo(name.name)  # no folder allowed: the text can only be data, though a file has that name
    assert isinstance(sent, Inbound) and sent.data == b"ABC" * 10


@pytest.mark.unit
def test_paths_are_read_only_inside_the_allowed_folders(tmp_path: Path, small_photos: Path) -> None:
    scene = small_photos / "two_people.jpg"
    inside = tmp_path / "ok" / "scene.jpg"
    inside.parent.mkdir()
    inside.write_bytes(scene.read_bytes())
    access = PhotoAccess(roots=[tmp_path / "ok"])
    assert to_photo(inside, access).data == scene.read_bytes()
    assert to_photo(inside.as_uri(), access).data == scene.read_bytes()
    for path in (scene, str(tmp_path / "ok" / ".." / "x.jpg"), "/etc/passwd", "/proc/self/environ"):
        with pytest.raises(InvalidInputError, match="is outside the allowed folders"):
            to_photo(path, access)
