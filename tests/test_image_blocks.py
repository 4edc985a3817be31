"""Every image block shape chat clients send, past and present, reads as the same photo bytes.

The shapes come from LangChain (v1 `base64`/`url`, v0 `source_type`), Agent Chat UI (`data` with
`mimeType`, as an `image` block today and as a `file` block before), the OpenAI APIs (`image_url`, in
object and string form; the Responses API's `input_image`; `file` blocks carrying `file_data`) and
Anthropic (`source`). They are read as a chat turn (`read_turn`, what the graph's first step calls),
so the forms only chat clients send are covered along with those `to_photo` reads for every caller.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from PIL import Image

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.messages import answer_message, read_turn
from rcmu_agent.photos import Inbound, PhotoRef, to_photo
from rcmu_agent.schema import Answer

pytestmark = pytest.mark.unit


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


PHOTO = _jpeg()
B64 = base64.b64encode(PHOTO).decode()
DATA_URL = f"data:image/jpeg;base64,{B64}"

SHAPES = {
    "LangChain v1 base64": {"type": "image", "base64": B64, "mime_type": "image/jpeg"},
    "LangChain v1 url (data URL)": {"type": "image", "url": DATA_URL},
    "LangChain v1 base64 holding a data URL": {"type": "image", "base64": DATA_URL},
    "LangChain v0 base64": {"type": "image", "source_type": "base64", "data": B64, "mime_type": "image/jpeg"},
    "LangChain v0 url": {"type": "image", "source_type": "url", "url": DATA_URL},
    "Agent Chat UI image": {"type": "image", "mimeType": "image/jpeg", "data": B64, "metadata": {"name": "a.jpg"}},
    "Agent Chat UI legacy file": {"type": "file", "mimeType": "image/png", "data": B64, "metadata": {"filename": "a"}},
    "data alone": {"type": "image", "data": B64},
    "LangChain file block": {"type": "file", "mime_type": "image/jpeg", "base64": B64},
    "LangChain v0 file block": {"type": "file", "source_type": "base64", "mime_type": "image/jpeg", "data": B64},
    "OpenAI image_url object": {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "auto"}},
    "OpenAI image_url string": {"type": "image_url", "image_url": DATA_URL},
    "OpenAI Responses input_image": {"type": "input_image", "image_url": DATA_URL, "detail": "auto"},
    "OpenAI file with file_data": {"type": "file", "file": {"file_data": DATA_URL, "filename": "a.jpg"}},
    "Anthropic source": {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": B64}},
}


def _turn(block: dict[str, Any]) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": "Who is this?"}, block])


@pytest.mark.parametrize("block", SHAPES.values(), ids=SHAPES.keys())
def test_each_client_shape_gives_the_photo_bytes(block: dict[str, Any]) -> None:
    turn = read_turn([_turn(block)])
    assert turn.question == "Who is this?"
    assert isinstance(turn.photo, Inbound) and turn.photo.data == PHOTO


def test_a_stored_photo_id_is_a_reference_not_data() -> None:
    pid = "photo:" + "ab" * 16
    assert to_photo({"type": "image", "id": pid}) == PhotoRef(pid)
    assert to_photo(pid) == PhotoRef(pid)
    assert read_turn([_turn({"type": "image", "id": pid})]).photo == PhotoRef(pid)


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "mimeType": "application/pdf", "data": B64},
        {"type": "file", "mimeType": "application/pdf", "data": B64, "metadata": {"filename": "a"}},  # Agent Chat UI
        {"type": "file", "mime_type": "text/plain", "base64": B64},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64," + B64, "filename": "a.pdf"}},
    ],
)
def test_a_block_that_says_it_is_not_an_image_is_refused(block: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="not an image"):
        read_turn([_turn(block)])


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "url": "https://example.com/a.jpg"},
        {"type": "image", "source_type": "url", "url": "http://example.com/a.jpg"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        {"type": "image_url", "image_url": "https://example.com/a.jpg"},
        {"type": "input_image", "image_url": "https://example.com/a.jpg"},
    ],
)
def test_a_remote_url_is_refused_in_a_chats_words(block: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        read_turn([_turn(block)])
    assert caught.value.problem.startswith("the image is a link (http")
    assert "never downloads" in caught.value.problem and "attach the image file itself" in caught.value.fix


@pytest.mark.parametrize(
    "block",
    [
        {"type": "input_image", "file_id": "file-abc"},
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "image", "source_type": "id", "id": "file-abc"},
    ],
)
def test_a_provider_file_id_is_refused(block: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="provider file id"):
        read_turn([_turn(block)])


def test_two_images_in_one_turn_are_refused() -> None:
    both = HumanMessage(content=[{"type": "text", "text": "?"}, SHAPES["Agent Chat UI image"], SHAPES["data alone"]])
    with pytest.raises(InvalidInputError, match="holds 2 images"):
        read_turn([both])


def test_the_answer_message_always_has_an_id() -> None:
    """The generative-UI message points at the answer by id, also when no token was streamed."""
    streamed = answer_message(Answer(text="hi"), message_id="run-1")
    assert isinstance(streamed, AIMessage) and streamed.id == "run-1"
    unstreamed = answer_message(Answer(text="", context_only=True))
    assert unstreamed.id and unstreamed.id != answer_message(Answer(text="", context_only=True)).id
