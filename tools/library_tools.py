"""`search_photos`: the user's indexed photo library (`rcmu index`) as a tool.

Two modes, because a host model needs both: find photos (by people together, text, dates) and get the
list with the regions that matched, or ask a question over the library and get an answer whose [n]
cite photos and regions (multimodal RAG through the RC-Qwen2-VL node).
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import ArgsSchema
from pydantic import BaseModel, ConfigDict, Field

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.prompt import shown_text
from rcmu_agent.tools._common import RcmuTool, failures

if TYPE_CHECKING:
    from rcmu_agent.schema import LibraryAnswer, PhotoHit

__all__ = ["SearchPhotosInput", "SearchPhotosTool"]


class SearchPhotosInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: list[str] = Field(
        default_factory=list,
        description="Names that must all appear together in the photo, e.g. ['Rose Leslie', 'Kit Harington'].",
    )
    text: str | None = Field(
        default=None, description="What the photo shows, in words, e.g. 'a cat on a sofa' (matched by meaning)."
    )
    since: date | None = Field(default=None, description="Taken on or after this day, YYYY-MM-DD.")
    until: date | None = Field(default=None, description="Taken on or before this day, YYYY-MM-DD.")
    limit: int = Field(default=10, ge=1, le=50, description="At most this many photos (1-50).")
    question: str | None = Field(
        default=None,
        description="Instead of listing photos, answer this question from the best-matching photos, with [n] "
        "citations to photos and regions, e.g. 'Where was Bella's last birthday party?'. Use it alone, "
        "without people, text or dates.",
    )


class SearchPhotosTool(RcmuTool):
    """Search the indexed library, or answer a question over it.

    The artifact is an object either way, with `photos`: `{"photos": [PhotoHit as JSON]}` for a search,
    `LibraryAnswer.summary()` (answer, citations, `photos`, `photo_citations`) for a question.
    """

    name: str = "search_photos"
    description: str = (
        "Search the user's photo library: photos with all the given people together, photos matching a "
        "text description, within a date range, or any combination. Each result gives the file name, when "
        "and where it was taken, who is in it and the pixel boxes of the matching people. With `question` "
        "instead, answers a question over the library, citing photos and regions as [n]."
    )
    args_schema: ArgsSchema | None = SearchPhotosInput

    def _run(
        self,
        people: list[str] | None = None,
        text: str | None = None,
        since: date | None = None,
        until: date | None = None,
        limit: int = 10,
        question: str | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, Any]:
        with failures():
            return self._search(people or [], text, since, until, limit, question)

    async def _arun(
        self,
        people: list[str] | None = None,
        text: str | None = None,
        since: date | None = None,
        until: date | None = None,
        limit: int = 10,
        question: str | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, Any]:
        """Search is a Chroma query and a little numpy, and `ask_library` has no async form yet: a worker
        thread keeps the event loop free either way."""
        with failures():
            return await asyncio.to_thread(self._search, people or [], text, since, until, limit, question)

    def _search(
        self,
        people: list[str],
        text: str | None,
        since: date | None,
        until: date | None,
        limit: int,
        question: str | None,
    ) -> tuple[str, Any]:
        if question is not None:
            _check_alone(people, text, since, until)
            return _library_answer(self.assistant.ask_library(question, user=self.scope, limit=limit))
        if not people and not text and since is None and until is None:
            raise InvalidInputError(
                "search_photos needs something to search by", "give people, text, since/until, or a question"
            )
        hits = self.assistant.search_photos(
            people=people, text=text, since=since, until=until, limit=limit, user=self.scope
        )
        return _hits_text(hits), {"photos": [h.model_dump(mode="json") for h in hits]}


def _check_alone(people: list[str], text: str | None, since: date | None, until: date | None) -> None:
    if people or text or since is not None or until is not None:
        raise InvalidInputError(
            "`question` cannot be combined with people, text or dates",
            "ask with `question` alone, or search with the filters alone",
        )


def _box(box: Any) -> str:
    return "(" + ",".join(f"{v:.0f}" for v in box) + ")"


def _file(path: str) -> str:
    """A photo as the model reads it: its file name only. The text goes to a model (and through MCP or
    a web chat to a stranger), so the folders the library lives in stay on this machine; the
    artifact keeps full paths for the application. A file name is anyone's text: cleaned like a name."""
    return shown_text(PurePath(path).name) or "(a photo whose file is gone)"


def _region(info: str | None, category: str) -> str:
    """Who or what a region is, cleaned like the prompt (`shown_text`): the recognised name, else the category."""
    return shown_text(info) or shown_text(category) or "object"


def _hits_text(hits: list[PhotoHit]) -> str:
    if not hits:
        return "no photo matched (is the library indexed? `rcmu index DIR`)"
    lines = [f"{len(hits)} photo(s):"]
    for n, hit in enumerate(hits, start=1):
        facts = []
        if hit.taken_at is not None:
            facts.append(f"taken {hit.taken_at:%Y-%m-%d %H:%M}")
        if hit.place is not None:
            facts.append(f"at {hit.place.lat:.4f},{hit.place.lon:.4f}")
        people = [name for name in map(shown_text, hit.people) if name]
        facts.append("people: " + (", ".join(people) or "none recognised"))
        matched = [hit.regions[i] for i in hit.matched_regions if 0 <= i < len(hit.regions)]
        if matched:
            facts.append("matched: " + ", ".join(f"{_region(r.info, r.category)} at {_box(r.box)}" for r in matched))
        lines.append(f"{n}. {_file(hit.path)} — " + "; ".join(facts) + f" (score {hit.score:.2f})")
    return "\n".join(lines)


def _library_answer(answer: LibraryAnswer) -> tuple[str, dict[str, Any]]:
    """The answer and what each [n] is: a region of a photo, or a photo as a whole."""
    lines = [shown_text(answer.text, citations=True, single_line=False) or "(the model returned no text)"]
    for c in sorted(answer.photo_citations, key=lambda c: c.index):
        name, kind = shown_text(c.name), _region(None, c.category)
        what = f"{name} ({kind})" if name else kind
        lines.append(f"[{c.index}] = {what} in {_file(c.path)}" + (f" at {_box(c.box)}" if c.box else ""))
    if not answer.photos:
        lines.append("(no photo in the library matched the question)")
    if answer.invalid_citations:
        numbers = ", ".join(f"[{n}]" for n in answer.invalid_citations)
        lines.append(f"note: the answer cites {numbers}, which match no photo or region; do not trust them")
    return "\n".join(lines), answer.summary()
