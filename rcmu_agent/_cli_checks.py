"""The checks `rcmu ask` and `rcmu describe` make on their arguments before any work, so a mistake gets
the one line that names it (`problem — fix`, exit 2) instead of an error far from its cause."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from rcmu_agent.errors import InvalidInputError, NotFoundError

__all__ = ["fail", "not_a_folder", "photo_and_question", "thread_exists"]


def fail(message: str) -> NoReturn:
    raise InvalidInputError(message, "see `rcmu ask --help`")


def photo_and_question(args: list[str]) -> tuple[str | None, str]:
    """The photo and the question, catching the mistakes that would otherwise surface far from their cause:
    a folder (later "not a readable photo"), the two swapped (later "photo 'Who is here?' does not
    exist"), or a photo alone (silently asked as a question about memory)."""
    order = "rcmu ask PHOTO QUESTION"
    if len(args) > 2:
        fail("give the photo and the question (quote the question)")
    if len(args) == 1:
        if _is_file(args[0]):
            raise InvalidInputError(f"'{args[0]}' is a photo, but no question was given", f"ask it as {order}")
        return None, args[0]
    photo, question = args
    not_a_folder(photo, f"give one photo file: {order} (a folder: `rcmu index FOLDER`, then `rcmu ask --library`)")
    if not _exists(photo) and _is_file(question):
        raise InvalidInputError(
            f"the photo '{question}' comes after the question '{photo}'", f"put the photo first: {order}"
        )
    return photo, question


def not_a_folder(photo: str, fix: str) -> None:
    if _is_dir(photo):
        raise InvalidInputError(f"'{photo}' is a folder, not a photo", fix)


def _exists(path: str) -> bool:
    """Whether `path` names anything, False for text that cannot be a path (too long, a NUL byte)."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def thread_exists(assistant: Any, thread: str) -> None:
    """A follow-up without a photo needs a thread to follow: asked on a thread nobody started, it
    would silently become a question about memory alone, read as if it continued a conversation."""
    if not assistant.graph.get_state({"configurable": {"thread_id": thread}}).values:
        raise NotFoundError(
            f"no thread '{thread}' exists", f"start it with a photo: rcmu ask --thread {thread} PHOTO QUESTION"
        )
