"""Chat messages in and out: what a human turn asks, and the answer as an AI message.

Chat front ends (LangGraph Studio, Agent Chat UI, any `langgraph-sdk` client) speak LangChain
messages. A human turn is text plus at most one image, in any content-block form a chat client sends,
past or present: LangChain v1 (`base64`, `url`) and v0 (`source_type`), Agent Chat UI's `data` with
`mimeType` (as `image`, or as a legacy `file` block), OpenAI's `image_url` and Responses
`input_image`, and OpenAI `file` blocks holding an image. A remote URL is refused: the server never
downloads. The answer goes back as an `AIMessage` whose text is the answer and whose `additional_kwargs["rcmu"]`
carries the structured part (`ANSWER_KEY`), JSON all the way down so it survives any transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.photos import FORMS, NO_PATHS, PhotoAccess, PhotoSource, to_photo
from rcmu_agent.schema import Answer

__all__ = ["ANSWER_KEY", "Turn", "answer_message", "human_turn", "photo_block", "read_turn"]

ANSWER_KEY = "rcmu"
_IMAGE_TYPES = {"image", "image_url", "input_image", "file"}
_REMOTE = ("http://", "https://", "ftp://", "ftps://", "s3://", "gs://")


@dataclass(frozen=True)
class Turn:
    """One human turn: the question and, when the turn carries one, its photo (bytes, or a vault id)."""

    question: str
    photo: PhotoSource | None = None


def read_turn(messages: Sequence[BaseMessage] | None, access: PhotoAccess = NO_PATHS) -> Turn:
    """The last message, which must be the human's: its text joined, its one image (if any) decoded.

    An image given as a path or `file://` URL is read only where `access` allows (by default nowhere).
    """
    if not messages:
        raise InvalidInputError("there is no message to answer", "send a human message with the question")
    last = messages[-1]
    if not isinstance(last, HumanMessage):
        raise InvalidInputError(
            f"the last message is a {last.type} message, not the user's",
            "end the input with a human message holding the question (and optionally one image)",
        )
    content = last.content
    blocks: list[Any] = [content] if isinstance(content, str) else list(content)
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif isinstance(block, dict) and block.get("type") in _IMAGE_TYPES:
            images.append(block)
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidInputError(
                f"message content of type {kind!r} is not understood", f"send text and one image as {FORMS}"
            )
    if len(images) > 1:
        raise InvalidInputError(
            f"the message holds {len(images)} images; a question is about one photo",
            "send one image per message (ask about each photo in turn)",
        )
    photo = to_photo(_standard_block(images[0]), access) if images else None
    return Turn(question="\n".join(t for t in texts if t.strip()), photo=photo)


def _standard_block(block: dict[str, Any]) -> dict[str, Any]:
    """The forms only chat clients send, as the standard block `to_photo` reads; and a remote URL
    refused in a chat's words (the photo itself must be attached, since the server never downloads)."""
    kind = block.get("type")
    if kind == "input_image":  # OpenAI Responses: {"type": "input_image", "image_url": "data:…" | "file_id": …}
        if isinstance(block.get("file_id"), str):
            block = {"type": "image", "file_id": block["file_id"]}
        else:
            block = {"type": "image_url", "image_url": block.get("image_url")}
    elif kind == "file" and isinstance(block.get("file"), dict):  # OpenAI: {"file": {"file_data": "data:…"}}
        inner = block["file"]
        if inner.get("file_id"):
            block = {"type": "file", "file_id": inner["file_id"]}
        else:
            block = {"type": "file", "base64": inner.get("file_data")}
    url = block.get("url")
    if block.get("type") == "image_url":
        inner = block.get("image_url")
        url = inner.get("url") if isinstance(inner, dict) else inner
    if isinstance(url, str) and url.strip().lower().startswith(_REMOTE):
        raise InvalidInputError(
            f"the image is a link ({url.strip()[:80]}); this server never downloads photos",
            "attach the image file itself (upload it) instead of its URL",
        )
    return block


def photo_block(photo_id: str) -> dict[str, Any]:
    """The image block a checkpoint keeps once the photo is in the vault: its id, a few dozen bytes
    where the photo itself would be hundreds of kilobytes in every checkpoint of the thread."""
    return {"type": "image", "id": photo_id}


def human_turn(question: str, photo_id: str | None = None) -> HumanMessage:
    """The message a Python caller's `(question, photo)` becomes once the photo is in the vault."""
    if photo_id is None:
        return HumanMessage(content=question)
    return HumanMessage(content=[{"type": "text", "text": question}, photo_block(photo_id)])


def answer_message(answer: Answer, *, message_id: str | None = None) -> AIMessage:
    """The answer for a chat: its text (or, with no model, the context it would have received) and the
    structured answer under `additional_kwargs["rcmu"]`.

    `message_id` is the id the streamed tokens carried, so a chat front end replaces the streamed
    message with this one instead of showing the answer twice. Without one (no tokens were streamed)
    the message gets a fresh id, which the answer's generative-UI message points at.
    """
    text = answer.text
    if answer.context_only:
        text = (
            "No model was asked (context only). It would have received this context:\n\n"
            f"{answer.prompt}\n\nTo get answers, configure a model (RCMU_MODEL, or RCMU_BACKEND=openai with "
            "RCMU_BASE_URL) and ask again without context_only."
        )
    payload = {**answer.summary(), "photo": answer.photo}
    if not answer.context_only:  # the context is the run's `answer` (kept once), not copied into every message
        payload.pop("context", None)
    return AIMessage(content=text, id=message_id or str(uuid4()), additional_kwargs={ANSWER_KEY: payload})
