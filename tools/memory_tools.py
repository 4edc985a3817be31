"""Tools over the personal memory itself: `remember` (teach or update) and `recall` (ask without a photo).

`recall` is the graph's memory route: the question picks entities by name and by meaning, the model
gets them as numbered entries, and the answer's [n] resolve to memory entries (no boxes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import ArgsSchema
from pydantic import BaseModel, ConfigDict, Field

from rcmu_agent.errors import InvalidInputError, NotFoundError, RcmuError
from rcmu_agent.photos import FORMS
from rcmu_agent.prompt import shown_text
from rcmu_agent.schema import Answer, Entity, normalize_category
from rcmu_agent.tools._common import RcmuTool, answer_text, failures
from rcmu_agent.tools.photo_tools import Photo

__all__ = [
    "ForgetInput",
    "ForgetTool",
    "ListPeopleInput",
    "ListPeopleTool",
    "RecallInput",
    "RecallTool",
    "RememberInput",
    "RememberTool",
]


class RememberInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Who or what, e.g. 'Rose Leslie' or 'Bella'. The same name again updates it.")
    info: str | None = Field(
        default=None,
        description="What to know about them, in a sentence or two (no visual details needed). Replaces the old "
        "info on an update; omit to keep it and only add photos.",
    )
    photos: list[Photo] = Field(
        default_factory=list,
        description=f"Reference photos to recognise them by, each {FORMS}. For a person, one clear face per photo.",
    )
    category: str | None = Field(
        default=None,
        description="person, dog, cat, cup, ... Default: person for someone new, unchanged on an update.",
    )
    region: list[float] | str | None = Field(
        default=None,
        description="Teach from one region of the one photo given (a group photo): a box [x1, y1, x2, y2] in "
        "pixels, or '[n]', a number of the regions `ask_about_photo` lists for that photo. A person's face must "
        "be inside it; for anything else the region itself is the reference.",
    )


class RecallInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        description="A question answered from what the user taught, with no photo, e.g. 'When did we adopt Bella?'"
    )


class ForgetInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The name (or id) of the person, pet or thing to forget, as `list_people` shows it.")


class ListPeopleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str | None = Field(default=None, description="Only this category (person, dog, ...); omit for all.")


def _who(entity: Entity, more: str = "") -> str:
    """`name (category, id ...)` as a host model reads it: name and category cleaned like the prompt
    (`shown_text`), so a stored "Obama [2] = Joe Biden" or a chat token never reaches it as such."""
    return f"{shown_text(entity.name)} ({shown_text(entity.category)}, id {entity.id}{more})"


def _entry(entity: Entity) -> dict[str, Any]:
    """What a caller sees of a memory entry: never the stored photos' paths, only how many there are."""
    return {
        "id": entity.id,
        "name": entity.name,
        "category": entity.category,
        "info": entity.info,
        "photos": len(entity.photos),
        "created_at": entity.created_at.isoformat(),
    }


class RememberTool(RcmuTool):
    """Add someone or something to memory, or update them (new info replaces, photos add up)."""

    name: str = "remember"
    description: str = (
        "Teach the user's personal memory about someone or something (a person, a pet, an object): a name, "
        "what to know about them, and reference photos to recognise them by in later photos. Using a name "
        "that is already known updates it. Returns the stored entry."
    )
    args_schema: ArgsSchema | None = RememberInput

    def _run(
        self,
        name: str,
        info: str | None = None,
        photos: list[Any] | None = None,
        category: str | None = None,
        region: list[float] | str | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            return self._remember(name, info, photos or [], category, region)

    async def _arun(
        self,
        name: str,
        info: str | None = None,
        photos: list[Any] | None = None,
        category: str | None = None,
        region: list[float] | str | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Teaching runs dlib and writes Chroma under a file lock: a worker thread keeps the loop free."""
        with failures():
            return await asyncio.to_thread(self._remember, name, info, photos or [], category, region)

    def _remember(
        self, name: str, info: str | None, photos: list[Any], category: str | None, region: list[float] | str | None
    ) -> tuple[str, dict[str, Any]]:
        if region is not None and len(photos) != 1:
            raise InvalidInputError(
                f"`region` is a region of one photo, but {len(photos)} were given", "give exactly one photo with it"
            )
        sources = [self._photo(p, k, len(photos)) for k, p in enumerate(photos, start=1)]  # all before any write
        old = self._existing(name)
        if old is None and info is None:
            raise NotFoundError(
                f"nobody named {shown_text(name)!r} is in memory yet",
                f"give `info` (what to know about {shown_text(name)}) to add them",
            )
        if old is not None and info is None and not sources:
            raise InvalidInputError(
                f"nothing to update for {shown_text(old.name)!r}", "give new `info`, new `photos`, or both"
            )
        if old is not None and category and normalize_category(category) != old.category:
            kind = shown_text(old.category)
            raise InvalidInputError(
                f"{shown_text(old.name)!r} is already remembered as a {kind}",
                f"leave `category` out (or use {kind!r}) to update them, or pick another name",
            )
        entity = self.assistant.remember(
            old.name if old else name,  # "barack obama" updates "Barack Obama" without renaming him
            info=info if info is not None else old.info if old else "",
            photos=sources,
            category=category or (old.category if old else "person"),
            user=self.scope,
            region=region,
        )
        added = len(entity.photos) - (len(old.photos) if old else 0)
        verb = "updated" if old else "remembered"
        text = (
            f"{verb} {_who(entity)} with {len(entity.photos)} reference photo(s), {added} new. "
            f"Info: {shown_text(entity.info)}"
        )
        return text, {"entity": _entry(entity), "created": old is None, "photos_added": added}

    def _photo(self, value: Any, number: int, count: int) -> Any:
        try:
            return self.photo(value)
        except RcmuError as exc:  # among several photos, say which one is bad
            raise type(exc)(exc.problem + (f" (photo {number} of {count})" if count > 1 else ""), exc.fix) from None

    def _existing(self, name: str) -> Entity | None:
        try:
            return self.assistant.parts.memory.get(self.scope, name)
        except NotFoundError:
            return None


class RecallTool(RcmuTool):
    """A question with no photo, answered from personal memory with [n] citations to memory entries."""

    name: str = "recall"
    description: str = (
        "Answer a question from the user's personal memory, without a photo: 'When did we adopt Bella?', "
        "'What does Joe like?'. The answer cites memory entries as [n]; the reply lists what each [n] is. "
        "For a question about a photo, use `ask_about_photo`."
    )
    args_schema: ArgsSchema | None = RecallInput

    def _run(self, question: str, run_manager: CallbackManagerForToolRun | None = None) -> tuple[str, dict[str, Any]]:
        with failures():
            return _reply(self.assistant.ask(question, user=self.scope))

    async def _arun(
        self, question: str, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            return _reply(await self.assistant.aask(question, user=self.scope))


def _reply(answer: Answer) -> tuple[str, dict[str, Any]]:
    return answer_text(answer), answer.summary()


class ForgetTool(RcmuTool):
    """Remove someone or something from memory, with their reference photos."""

    name: str = "forget"
    description: str = (
        "Remove a person, pet or thing from the user's personal memory, with the reference photos it was "
        "taught with. They are no longer recognised in photos or used in answers. Returns what was removed."
    )
    args_schema: ArgsSchema | None = ForgetInput

    def _run(self, name: str, run_manager: CallbackManagerForToolRun | None = None) -> tuple[str, dict[str, Any]]:
        with failures():
            return self._forget(name)

    async def _arun(
        self, name: str, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            return await asyncio.to_thread(self._forget, name)

    def _forget(self, name: str) -> tuple[str, dict[str, Any]]:
        entity = self.assistant.forget(name, user=self.scope)
        return f"forgot {_who(entity)}", {"entity": _entry(entity)}


class ListPeopleTool(RcmuTool):
    """Who and what the user's memory holds, so a model can refer to them by name."""

    name: str = "list_people"
    description: str = (
        "List the people, pets and things in the user's personal memory: name, category, what is known about "
        "them and how many reference photos they have. Use it before `forget`, or to see who can be recognised."
    )
    args_schema: ArgsSchema | None = ListPeopleInput

    def _run(
        self, category: str | None = None, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            return self._list(category)

    async def _arun(
        self, category: str | None = None, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            return await asyncio.to_thread(self._list, category)

    def _list(self, category: str | None) -> tuple[str, dict[str, Any]]:
        wanted = normalize_category(category) if category else None
        entities = [e for e in self.assistant.entities(user=self.scope) if wanted is None or e.category == wanted]
        lines = [f"{_who(e, f', {len(e.photos)} photo(s)')}: {shown_text(e.info)}" for e in entities]
        text = "\n".join(lines) if lines else "memory holds nobody" + (f" of category {wanted!r}" if wanted else "")
        return text, {"people": [_entry(e) for e in entities]}
