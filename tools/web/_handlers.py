"""What the web app's buttons do, as plain functions over one `Assistant` and one user.

Kept apart from the page layout (`app.py`) so each action reads top to bottom and raises the
library's `RcmuError` on bad input; the page turns those into a readable message. Every function takes
the user explicitly: the page derives it from the login, never from a form field.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from rcmu_agent.annotate import label, shrink
from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import InvalidInputError, ModelLoadError, RcmuError
from rcmu_agent.photos import PhotoAccess, PhotoRef
from rcmu_agent.regions import parse_region_spec
from rcmu_agent.schema import Answer, ContextEntry, Entity, Region
from rcmu_agent.tools._common import answer_text
from rcmu_agent.tools.web._files import Taken, WebFiles, upload_key

__all__ = [
    "NO_MODEL_NOTE",
    "ChatSession",
    "Labelled",
    "Picked",
    "allowed_folder",
    "check_reference",
    "current",
    "labelled",
    "people_rows",
    "pick",
    "stream_answer",
]

NO_MODEL_NOTE = (
    "No model answered: this shows what recognition found and the exact context a model would receive. "
    "To get answers, start with a model: RCMU_MODEL=/path/to/RC-Qwen2VL-2b, or RCMU_BACKEND=openai "
    "RCMU_BASE_URL=http://host:8000/v1 for a vLLM server."
)
Labelled = tuple[Any, list[tuple[tuple[int, int, int, int], str]]]


@dataclass
class ChatSession:
    """One conversation about one photo: a new photo starts a new thread, follow-ups stay on it.

    The photo is its id in the login's vault (never a path); a photo that was refused keeps its
    `problem — fix` here, so asking about it says why instead of answering without it."""

    thread: str = field(default_factory=lambda: uuid.uuid4().hex)
    photo: str | None = None
    sent: bool = False  # whether the photo has gone to the thread yet
    refused: tuple[str, str] | None = None
    proposing: bool = False  # a memory change awaits Confirm / Edit / Cancel (or a typed yes or no)

    @classmethod
    def refusing(cls, exc: RcmuError) -> ChatSession:
        return cls(refused=(exc.problem, exc.fix))


@dataclass(frozen=True)
class Picked:
    """A form's reference photos as its upload event took them: vault ids with the names they were sent
    as, or the first refusal (then none is kept, so nothing is taught from half a choice)."""

    sources: tuple[str, ...] = ()  # which uploads these are (`upload_key`), to tell a stale choice
    photos: tuple[Taken, ...] = ()
    refused: tuple[str, str] | None = None

    def taken(self) -> tuple[Taken, ...]:
        """The photos, to be looked up in the current login's vault; the refusal again if there was one."""
        if self.refused is not None:
            raise InvalidInputError(*self.refused)
        return self.photos

    def ids(self) -> list[PhotoRef]:
        return [PhotoRef(p.id) for p in self.taken()]


def pick(files: WebFiles, user: str, uploads: Sequence[Any] | None) -> Picked:
    """Each of a form's uploads into `user`'s vault (`WebFiles.take`), or the first refusal."""
    sources = tuple(upload_key(u) for u in uploads or ())
    try:
        return Picked(sources, tuple(files.take(user, u) for u in uploads or ()))
    except RcmuError as exc:
        return Picked(sources, refused=(exc.problem, exc.fix))


def current(files: WebFiles, user: str, uploads: Sequence[Any] | None, picked: Picked) -> Picked:
    """The photos a button uses: those the form's upload event took, or — when the click overtook that
    event (the page sends both as the upload lands) — the same uploads taken now, the same way."""
    if picked.sources == tuple(upload_key(u) for u in uploads or ()):
        return picked
    return pick(files, user, uploads)


def labelled(image: Any, regions: Sequence[ContextEntry], side: int = 1600) -> Labelled:
    """The photo with one labelled box per region, for `gr.AnnotatedImage` (hovering a label lights its box).

    A phone photo is shrunk to `side` pixels first, boxes with it: the page shows it, it need not carry 12 MP.
    """
    image, scale = shrink(image, side)
    boxes = []
    for entry in sorted(regions, key=lambda e: (e.index is None, e.index or 0)):
        if entry.box is None:
            continue
        x1, y1, x2, y2 = (round(v * scale) for v in entry.box)
        boxes.append(((x1, y1, x2, y2), label(entry)))
    return image, boxes


def stream_answer(
    assistant: Assistant,
    user: str,
    session: ChatSession,
    question: str,
    regions_text: str,
    context_only: bool,
) -> Iterator[tuple[str, Answer | None]]:
    """The answer as it is written: (text so far, None) per token, then (final text, the answer).

    The model runs in a worker thread that hands tokens over a queue, so the page updates live. Without a
    usable model the turn is answered with the context alone and a note on how to configure one.
    """
    if session.refused is not None:
        raise InvalidInputError(*session.refused)
    regions: list[Region] = [parse_region_spec(line) for line in regions_text.splitlines() if line.strip()]
    if regions and session.photo is None:
        raise InvalidInputError("regions were given without a photo", "upload the photo the boxes belong to")
    # the photo goes with the first question, and again with boxes (they are checked against the photo)
    photo = PhotoRef(session.photo) if session.photo is not None and (regions or not session.sent) else None
    pieces: queue.Queue[str | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def work(only_context: bool) -> None:
        try:
            outcome["answer"] = assistant.ask(
                question,
                photo,
                regions=regions or None,
                user=user,
                thread_id=f"web-{session.thread}",
                context_only=only_context,
                on_token=pieces.put,
            )
        except BaseException as exc:  # handed to the page's thread below
            outcome["error"] = exc
        finally:
            pieces.put(None)

    def run(only_context: bool) -> Iterator[str]:
        worker = threading.Thread(target=work, args=(only_context,), daemon=True)
        worker.start()
        text = ""
        while (piece := pieces.get()) is not None:
            text += piece
            yield text
        worker.join()

    yield from ((t, None) for t in run(context_only))
    if isinstance(outcome.get("error"), ModelLoadError):
        outcome.clear()
        yield from ((t, None) for t in run(True))
        context_only = True
    if "error" in outcome:
        raise outcome["error"]
    answer: Answer = outcome["answer"]
    session.sent = session.sent or photo is not None
    text = answer_text(answer) if not answer.context_only else f"{NO_MODEL_NOTE}\n\n{answer_text(answer)}"
    yield text, answer


def check_reference(
    assistant: Assistant, user: str, photos: Sequence[Taken], category: str
) -> tuple[list[Labelled], list[str]]:
    """Each reference photo of `user`'s vault (decoded upright, as recognition sees it) with the face
    that would be remembered, and a warning per doubtful photo."""
    shown, warnings = [], []
    for number, photo in enumerate(photos, start=1):
        name = photo.name
        image = assistant.photo(photo.id, user=user)
        if category.strip().lower() != "person":
            shown.append((image, [((0, 0, image.width, image.height), f"photo {number}: the whole photo")]))
            continue
        faces = assistant.parts.recognizer.face_detector.detect(image)
        if not faces:
            warnings.append(f"photo {number} ({name}): no face found — use a photo with a clear, frontal face")
        elif len(faces) > 1:
            warnings.append(f"photo {number} ({name}) holds {len(faces)} faces; the largest will be used")
        boxes = [(tuple(round(v) for v in f.box), "this face" if i == 0 else "ignored") for i, f in enumerate(faces)]
        shown.append((image, boxes))  # type: ignore[arg-type]
    return shown, warnings


def people_rows(entities: Sequence[Entity]) -> list[list[Any]]:
    return [[e.name, e.category, e.info, len(e.photos)] for e in entities]


def allowed_folder(folder: str, access: PhotoAccess) -> Path:
    """A folder to index: the project's one photo-access rule (allowed folders, never the rcmu home but
    the user's own photos, never a folder around the home), applied to the whole tree."""
    if not folder.strip():
        raise InvalidInputError("no folder given", "type the path of a folder of photos")
    if not access.roots:
        raise InvalidInputError(
            "indexing from the web needs RCMU_ALLOWED_ROOTS", "start `rcmu web` with RCMU_ALLOWED_ROOTS=/photos/folder"
        )
    return access.folder(folder)


def parse_day(value: str, what: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInputError(f"{what} {value.strip()!r} is not a date", "use YYYY-MM-DD, e.g. 2024-05-01") from None


def numbers(text: str, what: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise InvalidInputError(f"{what} {text!r} are not numbers", "give numbers separated by spaces") from None


def progress_callback(report: Callable[[float, str], Any]) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        report(done / total if total else 0.0, f"{done}/{total} photos")

    return progress
