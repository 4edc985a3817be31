"""Every image block shape chat clients send, past and present, reads as the same photo bytes."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

from rcmu_agent._photos import Inbound, PhotoRef, to_photo
from rcmu_agent.errors import InvalidInputError

pytestmark = pytest.mark.unit


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


PHOTO = _jpeg()
B64 = base64.b64encode(PHOTO).decode()


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "base64": B64, "mime_type": "image/jpeg"},  # LangChain v1
        {"type": "image", "source_type": "base64", "data": B64, "mime_type": "image/jpeg"},  # LangChain v0
        {"type": "image", "mimeType": "image/jpeg", "data": B64, "metadata": {"name": "a.jpg"}},  # Agent Chat UI
        {"type": "image", "data": B64},  # data alone
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{B64}"}},  # OpenAI
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": B64}},  # Anthropic
        {"type": "file", "mime_type": "image/jpeg", "base64": B64},  # a file block holding an image
    ],
)
def test_each_client_shape_gives_the_photo_bytes(block: dict[str, Any]) -> None:
    photo = to_photo(block)
    assert isinstance(photo, Inbound) and photo.data == PHOTO


def test_a_stored_photo_id_is_a_reference_not_data() -> None:
    pid = "photo:" + "ab" * 16
    assert to_photo({"type": "image", "id": pid}) == PhotoRef(pid)
    assert to_photo(pid) == PhotoRef(pid)


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "mimeType": "application/pdf", "data": B64},
        {"type": "file", "mime_type": "text/plain", "base64": B64},
    ],
)
def test_a_block_that_says_it_is_not_an_image_is_refused(block: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="not an image"):
        to_photo(block)
