"""The agent's steps, one method each; `rcmu_agent.graph` wires them in order.

Each node reads what it needs from the state and returns only what it adds, so `stream_mode="updates"`
shows a user (or LangGraph Studio) exactly what each step found. The state holds plain JSON only
(`_dump` / `_load` at the edges): checkpoints then revive under any serializer — LangGraph Server's
included — without registering our classes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from pydantic import BaseModel, TypeAdapter, ValidationError

from rcmu_agent.citations import is_refusal, number_regions, resolve_citations
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.generative_ui import push_answer_view
from rcmu_agent.messages import answer_message, photo_block, read_turn
from rcmu_agent.parts import Parts
from rcmu_agent.photos import ANY_FILE, Inbound, PhotoAccess, PhotoRef
from rcmu_agent.prompt import build_memory_prompt, build_prompt, clean_text, resolve_placeholders
from rcmu_agent.regions import check_region_count, region_error
from rcmu_agent.schema import Answer, ContextEntry, Entity, LibraryAnswer, PhotoCitation, PhotoHit, Region
from rcmu_agent.state import AgentState, Context
from rcmu_agent.timings import collect, stage

__all__ = ["MEMORY_MIN_SIMILARITY", "Nodes", "bound_user", "dump", "load"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
MEMORY_MIN_SIMILARITY = 0.25
_REGIONS = TypeAdapter(list[Region])


def dump(models: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in models]


def load(model: type[M], values: Sequence[dict[str, Any]] | None) -> list[M]:
    return [model.model_validate(v) for v in values or []]


def bound_user(config: RunnableConfig, asked: str | None, default: str, *, local_caller: bool) -> str:
    """Who the run is for. Behind a server, authentication decides (LangGraph Server puts the
    authenticated identity in `langgraph_auth_user_id`, which no client can set) and, without
    authentication, the deployment's own user; a local caller names the user in the run's context."""
    from rcmu_agent.users import check_user

    authenticated = (config.get("configurable") or {}).get("langgraph_auth_user_id")
    if authenticated:
        if asked and asked != authenticated:
            raise InvalidInputError(
                "the user is set by the server's authentication, not by the request",
                "leave `user` out of the run's context",
            )
        return check_user(str(authenticated))
    if local_caller and asked:
        return check_user(asked)
    if asked and asked != default:
        raise InvalidInputError(
            "this deployment serves one user and takes no user from the request",
            "configure authentication (langgraph.json `auth`) to serve several users",
        )
    return check_user(default)


def _regions_from_json(values: Any) -> list[Region] | None:
    """Caller regions as plain JSON (box, category, info, mask); errors name the region and field.
    Every way in (the graph's `regions` input, `Assistant.ask`, the tools, the CLI) passes here, so the
    caps on how many there are (counted before any is validated) and on each info hold for all."""
    if not values:
        return None
    if isinstance(values, list | tuple):
        check_region_count(values)
    if isinstance(values, list) and all(isinstance(v, Region) for v in values):
        return list(values)
    try:
        return _REGIONS.validate_python(values)
    except ValidationError as exc:
        raise region_error(
            "regions", exc, 'give each region as {"box": [x1, y1, x2, y2], "category": "...", "info": "..."} in pixels'
        ) from None


class Nodes:
    """The steps over one set of parts. `local_caller`: the machine's own user calls (CLI, Python), so
    photo paths anywhere are readable; otherwise (a server) inline images, and paths only inside
    `RCMU_ALLOWED_ROOTS`."""

    def __init__(self, parts: Parts, *, local_caller: bool) -> None:
        self.parts = parts
        self.local_caller = local_caller

    # ---- route ----------------------------------------------------------------------------------
    def route(self, state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
        from langgraph.config import get_config

        settings = self.parts.settings
        asked = runtime.context.user if runtime.context is not None else None
        user = bound_user(get_config(), asked, settings.user, local_caller=self.local_caller)
        access = ANY_FILE if self.local_caller else PhotoAccess.for_user(settings, user)
        turn = read_turn(state.get("messages"), access)
        question = clean_text(turn.question, "question", max_chars=settings.max_text_chars)
        regions = _regions_from_json(state.get("regions"))
        options = {
            "regions": dump(regions) if regions else None,
            "context_only": bool(state.get("context_only")),
            "library_limit": max(1, int(state.get("library_limit") or 4)),
        }
        form = runtime.context.teach if runtime.context is not None else None
        intent = _form_intent(form) if form else None
        if intent is None and not (state.get("library") or regions):
            intent = self._intent(question, state, user)
        fresh = {
            "user": user,
            "question": question,
            "turn": options,
            "reply": "",
            "reply_id": None,
            "prompt": "",
            "intent": intent,
            "change": None,
        }
        # a turn about a photo of its own, or about memory, leaves the library's collage behind
        off_library = {"library_photos": None, "library_refs": None}
        if turn.photo is not None:
            with collect() as clock, stage("decode_s"):  # sent bytes are decoded and checked here
                pid = self._photo_id(turn.photo, user)
            kept = _by_reference(state["messages"][-1], pid)
            timed = {"turn": {**options, "timings": clock.rounded()}}
            return {**fresh, **off_library, **kept, **timed, "route": "detect", "photo": pid}
        if state.get("library"):
            return {**fresh, "route": "library"}
        if intent is not None:  # a memory change on the thread's photo (if any): checked against this user's vault
            if state.get("photo"):
                self.parts.photos.image(user, state["photo"])
            return {**fresh, "route": "teach"}
        if state.get("photo") and (regions or state.get("entries") is not None):
            # a follow-up about the thread's photo (or the library's collage, whose citations still
            # resolve to photos): new boxes are detected anew on it, else reuse what was found. The
            # id comes from the checkpoint, which the thread's owner may rewrite: it is checked
            # against this user's vault before anything else runs.
            self.parts.photos.image(user, state["photo"])
            return {**fresh, **(off_library if regions else {}), "route": "detect" if regions else "compose"}
        if regions:
            raise InvalidInputError("regions were given without a photo", "send the photo the boxes belong to")
        _photo_arrived(state.get("messages") or [], lambda pid: self.parts.vault.has(user, pid))
        return {**fresh, **off_library, "route": "memory", "photo": None}

    def _intent(self, question: str, state: AgentState, user: str) -> dict[str, Any] | None:
        """The memory change this turn asks for (`rcmu_agent.teach_grammar`, or the chat model when
        `RCMU_CHAT_MODEL` is set), as JSON; None: a question. An update must name someone known."""
        from dataclasses import asdict

        from rcmu_agent.teach import find_entity
        from rcmu_agent.teach_grammar import parse_turn
        from rcmu_agent.teach_model import interpret

        settings = self.parts.settings
        if settings.chat_model:
            intent = interpret(settings, question, number_regions(load(ContextEntry, state.get("entries"))))
        else:
            intent = parse_turn(question)
            if (
                intent is not None
                and intent.action == "update"
                and find_entity(self.parts, user, intent.name or "") is None
            ):
                intent = None  # "James likes tea" about nobody known: a question like any other
        return asdict(intent) if intent is not None else None

    def _user(self) -> str:
        """The run's user, decided again from the run itself (as `route` decides it), never read from
        the state: a thread's owner may rewrite its state and resume the graph past `route`
        (`update_state(..., as_node="route")`, a `Command(goto=...)`), so a step that reads a vault or
        a memory must not trust a `user` (or a check) it did not make in this very run."""
        from langgraph.config import get_config
        from langgraph.runtime import get_runtime

        context = get_runtime(Context).context
        asked = context.user if context is not None else None
        return bound_user(get_config(), asked, self.parts.settings.user, local_caller=self.local_caller)

    def _photo_id(self, photo: Inbound | PhotoRef, user: str) -> str:
        """The photo in `user`'s vault: sent bytes are checked and kept there (once per content); a
        reference must already be there."""
        photos = self.parts.photos
        if isinstance(photo, PhotoRef):
            photos.image(user, photo.id)  # "no such photo" unless it is this user's
            return photo.id
        return photos.ingest(user, photo)

    # ---- detect + recall ----------------------------------------------------------------------
    def detect(self, state: AgentState) -> dict[str, Any]:
        recognizer = self.parts.recognizer
        user = self._user()
        with collect(state["turn"].get("timings")) as clock:  # stage times travel in the turn's options
            with stage("decode_s"):
                image = self.parts.photos.image(user, state["photo"])
            given = _regions_from_json(state["turn"].get("regions"))
            categories = [] if given else recognizer.object_categories(user)
            with stage("detect_s"):
                seen = recognizer.see(image, categories, given=given, source=state["photo"])
        turn = {**state["turn"], "timings": clock.rounded()}
        return {"detected": dump(seen), "image_size": list(image.size), "turn": turn}

    def recall(self, state: AgentState) -> dict[str, Any]:
        memory, user = self.parts.memory, self._user()
        entries = self.parts.recognizer.match(user, load(Region, state.get("detected")))
        named = memory.named_in(user, state["question"])
        found = {e.entity_id for e in entries}
        missing = [e for e in named if e.id not in found]
        if missing:
            log.info("named in the question but not recognised in the photo: %s", [e.name for e in missing])
        return {"entries": dump(entries), "mentioned": _mentioned(named)}

    def recall_memory(self, state: AgentState) -> dict[str, Any]:
        memory, user, question = self.parts.memory, self._user(), state["question"]
        named = memory.named_in(user, question)
        hits = [e for e, sim in memory.search(user, question, k=5) if sim >= MEMORY_MIN_SIMILARITY]
        chosen: list[Entity] = list({e.id: e for e in [*named, *hits]}.values())
        entries = [
            ContextEntry(category=e.category, index=i, entity_id=e.id, name=e.name, info=e.info)
            for i, e in enumerate(chosen, start=1)
        ]
        return {"entries": dump(entries), "mentioned": _mentioned(named), "detected": [], "photo": None}

    def library_retrieve(self, state: AgentState) -> dict[str, Any]:
        """Top photos for the question, as one collage with every known region as context."""
        from rcmu_agent.collage import collage_bytes, library_context

        parts, user = self.parts, self._user()
        photos = parts.library.search.retrieve(user, state["question"], state["turn"]["library_limit"])
        canvas, entries, refs = library_context(
            photos, parts.photos, parts.memory, user, parts.settings.library_collage_cell
        )
        pid = parts.photos.ingest(user, Inbound(collage_bytes(canvas), name="collage"))
        if not self.local_caller:  # a served answer names library photos by id and file name, not server path
            photos = [
                p.model_copy(update={"path": _name(p.path), "paths": [_name(q) for q in p.paths]}) for p in photos
            ]
            refs = [r.model_copy(update={"path": _name(r.path)}) for r in refs]
        return {
            "photo": pid,
            "image_size": list(canvas.size),
            "entries": dump(entries),
            "detected": [],
            "mentioned": [],
            "library_photos": dump(photos),
            "library_refs": dump(refs),
        }

    # ---- compose + answer + cite --------------------------------------------------------------
    def compose(self, state: AgentState) -> dict[str, Any]:
        """The region-context prompt over the photo (or the library's collage): entries numbered."""
        size = (int(state["image_size"][0]), int(state["image_size"][1]))
        entries = number_regions(load(ContextEntry, state.get("entries")))  # unknown regions numbered last
        question, _ = resolve_placeholders(state["question"], entries, size)
        sent = [e for e in entries if e.info]  # only what is known goes to the model
        return {"entries": dump(entries), "prompt": build_prompt(sent, question, size)}

    def compose_memory(self, state: AgentState) -> dict[str, Any]:
        """The memory-only prompt: remembered entries, no photo."""
        return {"prompt": build_memory_prompt(load(ContextEntry, state.get("entries")), state["question"])}

    def _chat_model(self, state: AgentState) -> Any:
        """The backend as a LangChain chat model bound to the thread's photo; building it may import
        torch and decode the photo, so async callers build it in a worker thread."""
        from rcmu_agent.backends.chat_model import VLMChatModel

        pid = state.get("photo")
        with stage("decode_s"):
            image = self.parts.photos.image(self._user(), pid) if pid else None
        return VLMChatModel(backend=self.parts.vlm, image=image)

    def answer(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        with collect(state["turn"].get("timings")) as clock:
            reply = self._chat_model(state).invoke([HumanMessage(content=state["prompt"])], config)
        turn = {**state["turn"], "timings": clock.rounded()}
        return {"reply": reply.text.strip(), "reply_id": reply.id, "turn": turn}

    async def aanswer(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        """Native async: tokens stream to the caller as they are decoded, and many questions against a
        server share one event loop instead of a thread each."""
        with collect(state["turn"].get("timings")) as clock:
            model = await asyncio.to_thread(self._chat_model, state)
            reply = await model.ainvoke([HumanMessage(content=state["prompt"])], config)
        turn = {**state["turn"], "timings": clock.rounded()}
        return {"reply": reply.text.strip(), "reply_id": reply.id, "turn": turn}

    def cite(self, state: AgentState) -> dict[str, Any]:
        answer = self._answer(state)
        return {"answer": answer.model_dump(mode="json"), "messages": [self._message(answer, state)]}

    def cite_library(self, state: AgentState) -> dict[str, Any]:
        """As `cite`, and each cited `[n]` resolved to the photo and region it came from."""
        from rcmu_agent.collage import cite_photos

        answer = self._answer(state)
        entries = load(ContextEntry, state.get("entries"))
        numbers = [c.index for c in answer.citations if c.valid]
        refs = load(PhotoCitation, state.get("library_refs"))
        library = LibraryAnswer(
            **answer.model_dump(exclude={"citations", "regions"}),
            citations=answer.citations,
            regions=answer.regions,
            photos=load(PhotoHit, state.get("library_photos")),
            photo_citations=cite_photos(entries, refs, numbers),
        )
        return {"answer": library.model_dump(mode="json"), "messages": [self._message(library, state)]}

    def _answer(self, state: AgentState) -> Answer:
        entries, reply = load(ContextEntry, state.get("entries")), state.get("reply", "")
        context_only = bool(state["turn"].get("context_only"))
        citations, invalid = resolve_citations(reply, entries)
        return Answer(
            text="" if context_only else reply,
            citations=citations,
            invalid_citations=invalid,
            unanswerable=is_refusal(reply) if not context_only else False,
            regions=[e for e in entries if e.region is not None] or entries,
            prompt=state.get("prompt", ""),
            context_only=context_only,
            photo=state.get("photo"),
            timings=state["turn"].get("timings") or {},
        )

    def _message(self, answer: Answer, state: AgentState) -> Any:
        message = answer_message(answer, message_id=state.get("reply_id"))
        if not self.local_caller:  # chat front ends with generative UI draw the photo and its boxes
            push_answer_view(answer, message, state.get("ui"), lambda pid: self.parts.photos.image(self._user(), pid))
        return message


def _mentioned(named: Sequence[Entity]) -> list[dict[str, Any]]:
    """The entities a question names, for the thread's state: without their reference photos, whose
    paths on the server's disk a served thread's state must not show (the state holds photo ids only)."""
    return [e.model_dump(mode="json", exclude={"photos"}) for e in named]


def _form_intent(form: Any) -> dict[str, Any]:
    """A front end's 'name this region' form (`Context.teach`) as the intent the words would give."""
    if not isinstance(form, dict) or not isinstance(form.get("name"), str) or not isinstance(form.get("region"), int):
        raise InvalidInputError(
            "the teach form needs a name and a region number", 'send {"name": "Rose", "region": 3, "info": "…"}'
        )
    info, category = form.get("info"), form.get("category")
    return {
        "action": "remember",
        "name": form["name"],
        "info": info if isinstance(info, str) and info.strip() else None,
        "category": category if isinstance(category, str) and category.strip() else None,
        "target": form["region"],
    }


def _photo_arrived(messages: Sequence[BaseMessage], kept: Callable[[str], bool]) -> None:
    """A follow-up in a thread whose last photo never reached the vault (it failed to load) says so,
    instead of answering from memory alone as if no photo had been sent. A photo that arrived was
    replaced by its id in this user's vault (`kept`); any other image block never did, whatever it
    points at (the same message for every case: it tells nothing of anyone else's photos)."""
    for message in reversed(messages[:-1]):
        if not isinstance(message, HumanMessage) or isinstance(message.content, str):
            continue
        images = [b for b in message.content if isinstance(b, dict) and b.get("type") in _IMAGE_TYPES]
        if images:
            if not all(set(b) == {"type", "id"} and kept(str(b["id"])) for b in images):
                raise InvalidInputError(
                    "the photo sent earlier in this thread could not be read, so there is no photo to answer about",
                    "send the photo again with the question (JPEG, PNG or WebP, within the size limits)",
                )
            return


def _name(path: str) -> str:
    return PurePath(path).name


def _by_reference(message: BaseMessage, pid: str) -> dict[str, Any]:
    """The human message again, its image replaced by the vault id (same message id, so LangGraph
    replaces it): the checkpoint keeps a few dozen bytes, not the photo, for every later turn."""
    content = message.content
    blocks = [content] if isinstance(content, str) else list(content)
    if any(isinstance(b, dict) and b.get("id") == pid for b in blocks) or message.id is None:
        return {}
    kept: list[Any] = [b for b in blocks if not (isinstance(b, dict) and b.get("type") in _IMAGE_TYPES)]
    kept = [{"type": "text", "text": b} if isinstance(b, str) else b for b in kept]
    return {"messages": [HumanMessage(content=[*kept, photo_block(pid)], id=message.id)]}


_IMAGE_TYPES = {"image", "image_url", "file"}
