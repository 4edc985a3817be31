"""The agent as a LangGraph graph: route → detect → recall → compose → answer → cite.

A question over the photo library takes route → library_retrieve → compose → answer → cite: the
retrieved photos become one collage with their regions as context (`rcmu_agent.library`).

This is the only module that knows the order of the steps. Each node is a small method that reads
what it needs from the state and returns only what it adds, so `stream_mode="updates"` shows a user
(or LangGraph Studio) exactly what each step found.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypedDict

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from rcmu_agent.citations import is_refusal, resolve_citations
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.parts import Parts
from rcmu_agent.prompt import (
    build_memory_prompt,
    build_prompt,
    clean_text,
    number_entries,
    resolve_placeholders,
)
from rcmu_agent.regions import check_box
from rcmu_agent.schema import Answer, ContextEntry, Entity, Region

__all__ = ["AgentState", "async_checkpointer", "build_graph", "checkpointer", "graph"]

log = logging.getLogger(__name__)
Route = Literal["detect", "compose", "memory", "library"]
MEMORY_MIN_SIMILARITY = 0.25


class AgentState(TypedDict, total=False):
    """Inputs (first block) and what the nodes add. Checkpointed per thread for follow-ups."""

    user: str
    question: str
    photo: str | None  # this turn's photo; None on a follow-up or a memory question
    regions: list[Region] | None  # caller-given regions: detection is skipped
    context_only: bool
    library: bool  # a question over the photo library (no photo)
    library_limit: int  # how many photos to retrieve for it

    route: Route
    image_path: str | None  # the photo the thread is about
    image_size: tuple[int, int]
    detected: list[Region]
    entries: list[ContextEntry]
    mentioned: list[Entity]
    prompt: str
    reply: str
    answer: Answer
    library_photos: list[Any]  # PhotoHit, in collage order
    library_refs: list[Any]  # PhotoCitation per entry, aligned with `entries`


class _Nodes:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def route(self, state: AgentState) -> dict[str, Any]:
        clean_text(state.get("question", ""), "question", max_chars=self.parts.settings.max_text_chars)
        if state.get("photo"):
            return {"route": "detect", "image_path": str(Path(str(state["photo"])).expanduser().resolve())}
        if state.get("library"):
            return {"route": "library"}
        if state.get("image_path") and state.get("entries") is not None and not state.get("regions"):
            return {"route": "compose"}  # a follow-up about the thread's photo: reuse what was found
        if state.get("regions"):
            raise InvalidInputError("regions were given without a photo", "pass the photo the boxes belong to")
        return {"route": "memory", "image_path": None}

    def detect(self, state: AgentState) -> dict[str, Any]:
        parts = self.parts
        image = parts.image(str(state["image_path"]))
        given = state.get("regions")
        if given:  # the caller's boxes, in the caller's order (<regionK> refers to it), checked strictly
            regions = [r.model_copy(update={"box": check_box(r.box, image.size, strict=True)}) for r in given]
        else:
            regions = parts.face_detector.detect(image)
            categories = [c for c in parts.memory.categories(state["user"]) if c != "person"]
            if parts.object_detector is not None and categories:
                regions += parts.object_detector.detect(image, categories)
        return {"detected": self._describe(image, regions, given=bool(given)), "image_size": image.size}

    def _describe(self, image: Any, regions: list[Region], *, given: bool) -> list[Region]:
        """Attach what recognition compares: face descriptors for people, image embeddings for objects.

        A caller's person box may hold a whole body, so its face is found by detection inside it
        rather than by aligning landmarks on the box itself.
        """
        parts, out = self.parts, list(regions)
        people = [i for i, r in enumerate(out) if r.info is None and r.category == "person"]
        if people:
            if given:
                found = parts.face_detector.detect(image)
                pairs = [(i, _face_inside(out[i], found)) for i in people]
            else:
                pairs = [(i, out[i]) for i in people]
            faces = [(i, face) for i, face in pairs if face is not None]
            encoded = parts.face_encoder.encode(image, [face for _, face in faces])
            for (i, _), face in zip(faces, encoded, strict=True):
                out[i] = out[i].model_copy(update={"descriptor": face.descriptor})
        objects = [i for i, r in enumerate(out) if r.info is None and r.category != "person"]
        if objects and parts.image_embedder is not None:
            crops = [parts.image_embedder.crop(image, out[i].box) for i in objects]
            for i, vector in zip(objects, parts.image_embedder.embed(crops), strict=True):
                out[i] = out[i].model_copy(update={"descriptor": vector.tolist()})
        return out

    def recall(self, state: AgentState) -> dict[str, Any]:
        memory, settings, user = self.parts.memory, self.parts.settings, state["user"]
        regions = state.get("detected", [])
        entries = [ContextEntry(region=r, info=r.info) for r in regions]
        faces = [i for i, r in enumerate(regions) if r.info is None and r.category == "person" and r.descriptor]
        objects = [i for i, r in enumerate(regions) if r.info is None and r.category != "person" and r.descriptor]
        matches = memory.match_faces(user, [regions[i].descriptor or [] for i in faces], settings.face_threshold)
        matches += memory.match_objects(
            user,
            [regions[i].descriptor or [] for i in objects],
            [regions[i].category for i in objects],
            settings.object_threshold,
        )
        for i, match in zip(faces + objects, matches, strict=True):
            if match is not None:
                e = match.entity
                entries[i] = entries[i].model_copy(
                    update={"entity_id": e.id, "name": e.name, "info": e.info, "distance": match.distance}
                )
        named = memory.named_in(user, state["question"])
        found = {e.entity_id for e in entries}
        missing = [e for e in named if e.id not in found]
        if missing:
            log.info("named in the question but not recognised in the photo: %s", [e.name for e in missing])
        return {"entries": entries, "mentioned": named}

    def recall_memory(self, state: AgentState) -> dict[str, Any]:
        memory, user, question = self.parts.memory, state["user"], state["question"]
        named = memory.named_in(user, question)
        hits = [e for e, sim in memory.search(user, question, k=5) if sim >= MEMORY_MIN_SIMILARITY]
        chosen = list({e.id: e for e in [*named, *hits]}.values())
        entries = [
            ContextEntry(category=e.category, index=i, entity_id=e.id, name=e.name, info=e.info)
            for i, e in enumerate(chosen, start=1)
        ]
        return {"entries": entries, "mentioned": named, "detected": []}

    def library_retrieve(self, state: AgentState) -> dict[str, Any]:
        """Top photos for the question, as one collage with every known region as context."""
        from rcmu_agent.library import library_context, retrieve, save_collage

        settings, user = self.parts.settings, state["user"]
        question = clean_text(state["question"], "question", max_chars=settings.max_text_chars)
        photos = retrieve(self.parts.library, user, question, max(1, int(state.get("library_limit") or 4)))
        canvas, entries, refs = library_context(self.parts, user, photos)
        path = save_collage(canvas, settings.home / "library" / "collages")
        return {
            "image_path": str(path),
            "image_size": canvas.size,
            "entries": entries,
            "detected": [],
            "mentioned": [],
            "library_photos": photos,
            "library_refs": refs,
        }

    def compose(self, state: AgentState) -> dict[str, Any]:
        question = clean_text(state["question"], "question", max_chars=self.parts.settings.max_text_chars)
        if state.get("route") == "memory":
            return {"prompt": build_memory_prompt(state["entries"], question)}
        size = state["image_size"]
        entries = number_entries(state.get("entries", []))
        question, _ = resolve_placeholders(question, entries, size)
        return {"entries": entries, "prompt": build_prompt(entries, question, size)}

    def answer(self, state: AgentState) -> dict[str, Any]:
        path = state.get("image_path")
        image = self.parts.image(path) if path else None
        return {"reply": self.parts.vlm.generate(state["prompt"], image)}

    async def aanswer(self, state: AgentState) -> dict[str, Any]:
        """Native async, so `ainvoke` runs many questions against a server without a thread each."""
        path = state.get("image_path")
        image = self.parts.image(path) if path else None
        return {"reply": await self.parts.vlm.agenerate(state["prompt"], image)}

    def cite(self, state: AgentState) -> dict[str, Any]:
        entries, reply = state.get("entries", []), state.get("reply", "")
        context_only = bool(state.get("context_only"))
        citations, invalid = resolve_citations(reply, entries)
        answer = Answer(
            text="" if context_only else reply,
            citations=citations,
            invalid_citations=invalid,
            unanswerable=is_refusal(reply) if not context_only else False,
            regions=[e for e in entries if e.region is not None] or [e for e in entries],
            prompt=state.get("prompt", ""),
            context_only=context_only,
            image=state.get("image_path"),
        )
        if state.get("route") == "library":
            from rcmu_agent.library import cite_photos
            from rcmu_agent.memory.library import LibraryAnswer

            numbers = [c.index for c in citations if c.valid]
            answer = LibraryAnswer(
                **answer.model_dump(exclude={"citations", "regions"}),
                citations=citations,
                regions=answer.regions,
                photos=state.get("library_photos", []),
                photo_citations=cite_photos(entries, state.get("library_refs", []), numbers),
            )
        return {"answer": answer, "reply": "" if context_only else reply}


def _face_inside(box_region: Region, faces: list[Region]) -> Region | None:
    """The largest detected face whose centre lies inside the caller's box."""
    x1, y1, x2, y2 = box_region.box
    inside = [f for f in faces if x1 <= (f.box[0] + f.box[2]) / 2 <= x2 and y1 <= (f.box[1] + f.box[3]) / 2 <= y2]
    return max(inside, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)


def build_graph(parts: Parts | None = None, *, checkpointer: Any = None) -> Any:
    """Compile the agent. `parts` defaults to everything built from `Settings()` (the environment)."""
    nodes = _Nodes(parts or Parts())
    builder = StateGraph(AgentState)
    builder.add_node("route", nodes.route)
    builder.add_node("detect", nodes.detect)
    builder.add_node("recall", nodes.recall)
    builder.add_node("recall_memory", nodes.recall_memory)
    builder.add_node("library_retrieve", nodes.library_retrieve)
    builder.add_node("compose", nodes.compose)
    builder.add_node("answer", RunnableLambda(nodes.answer, afunc=nodes.aanswer, name="answer"))
    builder.add_node("cite", nodes.cite)
    builder.add_edge(START, "route")
    builder.add_conditional_edges(
        "route",
        lambda s: s["route"],
        {"detect": "detect", "compose": "compose", "memory": "recall_memory", "library": "library_retrieve"},
    )
    builder.add_edge("detect", "recall")
    builder.add_edge("recall", "compose")
    builder.add_edge("recall_memory", "compose")
    builder.add_edge("library_retrieve", "compose")
    builder.add_conditional_edges("compose", lambda s: "cite" if s.get("context_only") else "answer")
    builder.add_edge("answer", "cite")
    builder.add_edge("cite", END)
    return builder.compile(checkpointer=checkpointer, name="rcmu-agent")


def _serializer() -> Any:
    """The schema's pydantic models are the only classes a checkpoint may revive."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    allowed = [
        ("rcmu_agent.schema", name) for name in ("RLE", "Region", "Entity", "ContextEntry", "Citation", "Answer")
    ]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def checkpointer(path: Path) -> Any:
    """SQLite checkpoints (one file), so a `thread_id` can ask follow-ups across processes."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn, serde=_serializer())


@asynccontextmanager
async def async_checkpointer(path: Path) -> AsyncIterator[Any]:
    """The same SQLite file for async callers; its connection belongs to the running event loop."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        yield AsyncSqliteSaver(conn, serde=_serializer())


# For LangGraph Studio / Server (langgraph.json): parts come from RCMU_* settings on first use;
# the server supplies its own persistence.
graph = build_graph()
