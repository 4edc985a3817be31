"""The library's front door: teach, ask, describe — one object over the parts and the graph.

The CLI, the LangChain tools and the evaluation runner all go through here, so there is one way to
ask a question and it always runs the compiled graph.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import InvalidInputError, NotFoundError, RcmuError
from rcmu_agent.images import ImageSource, load_image
from rcmu_agent.parts import Parts
from rcmu_agent.photos import ANY_FILE, Inbound, PhotoRef
from rcmu_agent.prompt import DESCRIBE_QUESTION
from rcmu_agent.schema import (
    Answer,
    Cluster,
    Entity,
    ExportReport,
    ImportReport,
    IndexReport,
    LibraryAnswer,
    MemoryChange,
    PhotoHit,
    Region,
    normalize_category,
)
from rcmu_agent.settings import Settings

if TYPE_CHECKING:
    from rcmu_agent.memory.library import PhotoLibrary
    from rcmu_agent.state import Context

__all__ = ["Assistant"]

log = logging.getLogger(__name__)
Progress = Callable[[str, dict[str, Any]], None]
Photo = ImageSource | Inbound | PhotoRef  # a local path, bytes, a PIL image, what the door read, or a vault id
# A thread's turn is saved once, when it ends (or stops at an interrupt or error), not after each of its
# ~6 steps: every save rewrites the whole conversation (rcmu_agent.graph.checkpointer keeps the latest).
_SAVE_AT_EXIT: dict[str, Any] = {"durability": "exit"}


class Assistant:
    """Personal memory plus the agent graph, for one configuration (`Settings`)."""

    def __init__(self, settings: Settings | None = None, *, parts: Parts | None = None) -> None:
        self.parts = parts or Parts(settings or Settings())
        self.settings = self.parts.settings
        self._graph: Any = None
        self._plain: Any = None

    @property
    def graph(self) -> Any:
        """The compiled graph with SQLite checkpoints under `RCMU_HOME`, built on first use."""
        if self._graph is None:
            # LangGraph costs ~1 s of imports: loaded on the first question, so `rcmu list` never pays it
            from rcmu_agent.graph import build_graph, checkpointer

            saver = checkpointer(self.settings)
            self._graph = build_graph(self.parts, checkpointer=saver, local_caller=True)
        return self._graph

    def _graph_for(self, thread_id: str | None) -> Any:
        """One-off questions skip checkpoints: nothing to follow up on, nothing to store."""
        if thread_id:
            return self.graph
        if self._plain is None:
            from rcmu_agent.graph import build_graph

            self._plain = build_graph(self.parts, local_caller=True)
        return self._plain

    # ---- memory --------------------------------------------------------------------------------
    def remember(
        self,
        name: str,
        *,
        info: str,
        photos: Sequence[Photo] = (),
        category: str = "person",
        user: str | None = None,
        region: Sequence[float] | str | int | None = None,
        thread_id: str | None = None,
    ) -> Entity:
        """Teach (or update) an entity. Every photo is checked before anything is written.

        With `region` — a box `(x1, y1, x2, y2)` of the one photo given, or `"[n]"` (or `n`) of the
        thread `thread_id`'s last answer, whose photo is then the one used — the reference is cut
        from that region: the face inside it for a person (an error when there is none), the crop
        itself for anything else. So a group photo teaches one of its people.
        """
        from rcmu_agent.memory import ReferencePhoto

        user = self.settings.user if user is None else user  # "" is an invalid id, not the default
        if region is not None:
            return self._remember_region(name, info, photos, category, self._user(user), region, thread_id)
        category = normalize_category(category)
        references: list[ReferencePhoto] = []
        for number, source in enumerate(photos, start=1):
            label = str(source) if isinstance(source, str | Path) else "photo"
            which = f" (photo {number} of {len(photos)})" if len(photos) > 1 else ""
            try:
                data, suffix = self._photo_bytes(source, user)
                image = load_image(
                    data, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
                )
            except RcmuError as exc:  # among several photos, say which one is bad
                raise type(exc)(exc.problem.replace("image bytes", label) + which, exc.fix) from None
            ref = self.parts.recognizer.describe_reference(image, category, f"{label}{which}")
            if ref.faces > 1:
                log.warning("%s has %d faces; using the largest as %s", label, ref.faces, name)
            if category != "person" and ref.image_embedding is None:
                log.warning("no image embedding model configured: %s will not be recognised visually", name)
            references.append(
                ReferencePhoto(data, suffix, face_descriptor=ref.face_descriptor, image_embedding=ref.image_embedding)
            )
        return self.parts.memory.remember(user, name, info, category, references)

    def _remember_region(
        self,
        name: str,
        info: str,
        photos: Sequence[Photo],
        category: str,
        user: str,
        region: Sequence[float] | str | int,
        thread_id: str | None,
    ) -> Entity:
        from rcmu_agent.teach import remember_region

        if len(photos) > 1:
            raise InvalidInputError("a region belongs to one photo, but several were given", "give one photo")
        photo = self._photo_id(photos[0], user) if photos else None
        thread = self._thread(thread_id, user) if thread_id is not None else None
        return remember_region(
            self.parts, user, name=name, info=info or None, category=category or None, photo=photo, region=region,
            thread=thread,
        )  # fmt: skip

    def _thread(self, thread_id: str, user: str) -> dict[str, Any]:
        """A thread's state, only for the user it belongs to ("no such thread" for anyone else's)."""
        values = self.graph.get_state({"configurable": {"thread_id": thread_id}}).values
        if not values or values.get("user") != user:
            raise NotFoundError(f"there is no thread {thread_id!r}", "start it with a question about a photo")
        return dict(values)

    def forget(self, key: str, *, user: str | None = None) -> Entity:
        return self.parts.memory.forget(self._known_user(user), key)

    def entities(self, *, user: str | None = None) -> list[Entity]:
        return self.parts.memory.entities(self._known_user(user))

    def _known_user(self, user: str | None) -> str:
        """A checked user id. A user who taught nothing has an empty memory, not an error: an error
        would tell a stranger which ids exist (and once listed them all)."""
        return self._user(user)

    # ---- carrying memory: export, import ----------------------------------------------------------
    def export_memory(
        self, out: Path | str, *, user: str | None = None, all_users: bool = False, library: bool = False
    ) -> ExportReport:
        """Write `user`'s memory (or every user's) to the new folder `out`: entities and reference photos,
        no vectors (format in the README, "Export and import")."""
        from rcmu_agent.memory.transfer import export_memory

        users = None if all_users else [self._user(user)]
        return export_memory(self.parts.memory, out, users=users, library=library)

    def import_memory(
        self,
        source: Path | str,
        *,
        user: str | None = None,
        from_user: str | None = None,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ImportReport:
        """Load an export folder or a JSONL/CSV knowledge base into `user`'s memory: idempotent, resumable,
        faces described in `workers` processes (None: one per CPU; 0: in this process)."""
        from rcmu_agent.memory.transfer import import_memory

        return import_memory(
            self.parts.recognizer,
            source,
            user=self._user(user),
            from_user=from_user,
            workers=workers,
            progress=progress,
        )

    # ---- photo library -------------------------------------------------------------------------
    @property
    def library(self) -> PhotoLibrary:
        """The indexed photos (`rcmu index`), built on first use and shared with the graph."""
        return self.parts.library

    def index_library(
        self,
        root: Path | str,
        *,
        user: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> IndexReport:
        """Index (or re-index, incrementally) the photos under `root` for `user`."""
        return self.library.indexer.index(root, user=self._user(user), progress=progress)

    def search_photos(
        self,
        *,
        people: Sequence[str] = (),
        text: str | None = None,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        limit: int = 10,
        user: str | None = None,
    ) -> list[PhotoHit]:
        """Photos with all of `people`, closest to `text`, taken within [since, until] (all optional)."""
        return self.library.search.search(
            self._user(user), people=people, text=text, since=since, until=until, limit=limit
        )

    def ask_library(
        self, question: str, *, user: str | None = None, limit: int = 4, context_only: bool = False
    ) -> LibraryAnswer:
        """Multimodal RAG: retrieve the top photos for `question`, show them to the model as one collage
        with every region in the context, and answer with citations that resolve to (photo, region)."""
        state = {
            "messages": [_human(question)],
            "context_only": context_only,
            "library": True,
            "library_limit": limit,
        }
        result = self._graph_for(None).invoke(state, context=_context(self._user(user)))
        return LibraryAnswer.model_validate(result["answer"])

    def people(self, *, user: str | None = None, include_named: bool = False) -> list[Cluster]:
        """Clusters of faces nobody has named yet (largest first), with sample crops."""
        return self.library.clusters.of(self._user(user), include_named=include_named)

    def name_cluster(self, cluster: int, name: str, *, info: str | None = None, user: str | None = None) -> Cluster:
        """Name every face of a cluster; the person is remembered so later photos are recognised too."""
        return self.library.clusters.name(self._user(user), cluster, name, info=info)

    def merge_clusters(self, clusters: Sequence[int], *, user: str | None = None) -> Cluster:
        return self.library.clusters.merge(self._user(user), clusters)

    def split_cluster(self, cluster: int, faces: Sequence[int], *, user: str | None = None) -> Cluster:
        """Move `faces` out of `cluster` into a new cluster (a user decision: never re-guessed)."""
        return self.library.clusters.split(self._user(user), cluster, faces)

    def _user(self, user: str | None) -> str:
        from rcmu_agent.users import check_user

        return check_user(self.settings.user if user is None else user)

    # ---- questions -----------------------------------------------------------------------------
    def ask(
        self,
        question: str,
        photo: Photo | None = None,
        *,
        regions: Sequence[Region] | None = None,
        user: str | None = None,
        thread_id: str | None = None,
        context_only: bool = False,
        on_update: Progress | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer `question` about `photo` (or from memory alone when there is no photo).

        With a `thread_id`, a later call without a photo asks a follow-up about the same photo.
        `on_update(node, update)` hears each step as it finishes; `on_token(text)` each piece of the
        answer as the model writes it.
        """
        state, context = self._turn(question, photo, regions, user, context_only)
        graph = self._graph_for(thread_id)
        config = {"configurable": {"thread_id": thread_id}} if thread_id else {}
        return self._run(graph, state, config, context, on_update, on_token)

    def resume(
        self,
        thread_id: str,
        decision: bool | str | dict[str, Any],
        *,
        user: str | None = None,
        on_update: Progress | None = None,
    ) -> Answer:
        """Answer a proposed memory change (an `ask` whose answer has `change.status == "proposed"`): yes
        (True / "yes"), no (False / "no") or an edit (`{"name"?, "info"?, "category"?}`). The answer
        says what was done, with the photo's regions recognised again."""
        from langgraph.types import Command

        user = self._known_user(user)
        values = self._thread(thread_id, user)
        pending = self.graph.get_state({"configurable": {"thread_id": thread_id}}).interrupts
        if not pending or not values.get("change"):
            raise InvalidInputError(
                f"thread {thread_id!r} is not waiting for a yes or no", "ask for a memory change first ('[1] is Rose')"
            )
        config = {"configurable": {"thread_id": thread_id}}
        return self._run(self.graph, Command(resume=decision), config, _context(user), on_update, None)

    def teach(
        self,
        thread_id: str,
        region: int,
        name: str,
        *,
        info: str | None = None,
        category: str | None = None,
        user: str | None = None,
    ) -> Answer:
        """Propose naming region `[region]` of the thread's photo (a front end's "name this face" form):
        the same proposal as the words "[region] is NAME", awaiting `resume`."""
        user = self._known_user(user)
        self._thread(thread_id, user)
        form = {"name": name, "region": region, "info": info, "category": category}
        state = {"messages": [_human(f"[{region}] is {name}" + (f"; {info}" if info else ""))]}
        config = {"configurable": {"thread_id": thread_id}}
        return self._run(self.graph, state, config, _context(user, form), None, None)

    def _run(
        self,
        graph: Any,
        state: Any,
        config: dict[str, Any],
        context: Context,
        on_update: Progress | None,
        on_token: Callable[[str], None] | None,
    ) -> Answer:
        saving = _SAVE_AT_EXIT if config else {}
        if on_update is None and on_token is None:
            return _answer_of(graph.invoke(state, config, context=context, **saving))
        result: dict[str, Any] = {}
        for mode, chunk in graph.stream(state, config, context=context, stream_mode=["updates", "messages"], **saving):
            if mode == "messages":
                message, meta = chunk
                if on_token is not None and meta.get("langgraph_node") == "answer" and message.text:
                    on_token(message.text)
                continue
            for node, update in chunk.items():
                if node == "__interrupt__":  # the run stopped at a proposed memory change
                    result[node] = update
                    continue
                if on_update is not None:
                    on_update(node, update or {})
                result.update(update or {})
        return _answer_of(result)

    async def aask(
        self,
        question: str,
        photo: Photo | None = None,
        *,
        regions: Sequence[Region] | None = None,
        user: str | None = None,
        thread_id: str | None = None,
        context_only: bool = False,
    ) -> Answer:
        """`ask` for async callers: the model call is awaited natively (many in flight against a server);
        detection and recall run in worker threads so the event loop never blocks on dlib."""
        state, context = await asyncio.to_thread(self._turn, question, photo, regions, user, context_only)
        if thread_id:
            from rcmu_agent.graph import async_checkpointer, build_graph

            async with async_checkpointer(self.settings) as saver:
                graph = build_graph(self.parts, checkpointer=saver, local_caller=True)
                config = {"configurable": {"thread_id": thread_id}}
                result = await graph.ainvoke(state, config, context=context, **_SAVE_AT_EXIT)
        else:
            result = await self._graph_for(None).ainvoke(state, context=context)
        return _answer_of(result)

    def _turn(
        self,
        question: str,
        photo: Photo | None,
        regions: Sequence[Region] | None,
        user: str | None,
        context_only: bool,
    ) -> tuple[dict[str, Any], Context]:
        """The graph input for one turn: the human message (text + the photo's vault id), this turn's
        regions as JSON, and the user in the run's context."""
        user = self._known_user(user)
        pid = self._photo_id(photo, user) if photo is not None else None
        state = {
            "messages": [_human(question, pid)],
            "regions": [r.model_dump(mode="json") for r in regions] if regions else None,
            "context_only": context_only,
        }
        return state, _context(user)

    def photo(self, photo_id: str, *, user: str | None = None) -> Any:
        """The decoded photo `photo_id` (an answer's `photo`) from `user`'s vault: "no such photo"
        for an id of anyone else's."""
        return self.parts.photos.image(self._user(user), photo_id)

    def describe(self, photo: Photo, **kwargs: Any) -> Answer:
        """Region-level context-aware description (the RCID task)."""
        return self.ask(DESCRIBE_QUESTION, photo, **kwargs)

    def _photo_id(self, photo: Photo, user: str) -> str:
        """The photo in `user`'s vault (read once, checked, kept by content): the graph gets its id."""
        if isinstance(photo, PhotoRef):
            self.parts.photos.image(user, photo.id)  # "no such photo" unless it is this user's
            return photo.id
        if isinstance(photo, Inbound):
            return self.parts.photos.ingest(user, photo)
        data, _ = self._photo_bytes(photo, user)
        name = str(photo) if isinstance(photo, str | Path) else "photo"
        return self.parts.photos.ingest(user, Inbound(data, name=name))

    def _photo_bytes(self, source: Photo, user: str) -> tuple[bytes, str]:
        """A photo's bytes and a file suffix: local paths through the door (the machine's own user may
        name any regular file), vault ids from `user`'s vault."""
        if isinstance(source, bytes):
            return source, ".img"
        if isinstance(source, Inbound):
            return source.data, ".img"
        if isinstance(source, PhotoRef):
            return self.parts.vault.get(user, source.id), ".img"
        if isinstance(source, str | Path):
            path = Path(str(source).removeprefix("file://")).expanduser()
            if not path.exists():
                raise NotFoundError(f"photo {path} does not exist", "check the path")
            return replace(ANY_FILE, max_bytes=self.settings.max_image_bytes).read(path).data, path.suffix or ".img"
        import io

        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return buffer.getvalue(), ".png"


def _human(question: str, photo_id: str | None = None) -> Any:
    from rcmu_agent.messages import human_turn  # LangChain loads with the first question, not with `rcmu list`

    return human_turn(question, photo_id)


def _context(user: str, teach: dict[str, Any] | None = None) -> Context:
    from rcmu_agent.state import Context

    return Context(user=user, teach=teach)


def _answer_of(result: dict[str, Any]) -> Answer:
    """The run's answer; for a run stopped at a proposed memory change, the proposal as an answer
    (its `change` awaits `Assistant.resume`)."""
    pending = result.get("__interrupt__")
    if pending:
        value = pending[0].value  # after a resume it could not use, `error` says why it asks again
        change = MemoryChange.model_validate(value["proposal"])
        text = f"{value['error']}\n{value['question']}" if value.get("error") else value["question"]
        return Answer(text=text, change=change, photo=change.photo)
    return Answer.model_validate(result["answer"])
