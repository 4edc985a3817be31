"""The agent as a LangGraph graph: route → detect → recall → compose → answer → cite.

A question over the photo library takes route → library_retrieve → compose → answer → cite_library:
the retrieved photos become one collage with their regions as context (`rcmu_agent.collage`), and
citations resolve to photos. A question with no photo takes route → recall_memory → compose_memory →
answer → cite. A follow-up about the thread's photo goes from route straight to compose (and, after a
library question, on to cite_library: the follow-up is about the same photos). With
`context_only`, compose goes straight to citing. A turn that changes memory ("[2] is my sister Rose",
"forget Bella", "who do you know?") takes route → propose → confirm, where `confirm` interrupts with
the proposal and writes only when resumed with a yes (`rcmu_agent._teach_nodes`); with a photo of its
own it is detected and recognised first (route → detect → recall → propose). Every route is its own
path of nodes, so LangGraph Studio's picture of the graph shows all of them.

This is the only module that knows the order of the steps (`rcmu_agent._nodes` holds the steps,
`rcmu_agent.state` the schemas). Messages in, an AI message out: the graph sits behind any chat front
end, and `stream_mode="messages"` streams the answer token by token.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from rcmu_agent._nodes import Nodes
from rcmu_agent._teach_nodes import TeachNodes
from rcmu_agent.errors import RcmuError
from rcmu_agent.parts import Parts
from rcmu_agent.settings import Settings
from rcmu_agent.state import AgentState, Context, InputState, OutputState

__all__ = ["async_checkpointer", "build_graph", "checkpointer"]

log = logging.getLogger(__name__)


def build_graph(parts: Parts | None = None, *, checkpointer: Any = None, local_caller: bool = False) -> Any:
    """Compile the agent. `parts` defaults to everything built from `Settings()` (the environment).

    `local_caller=True` is for the machine's own user (the CLI, Python code): photos may be paths
    anywhere and the run's context names the user. The default suits servers: images arrive inline
    and the user comes from authentication (or is the deployment's one user).
    """
    nodes = Nodes(parts or Parts(), local_caller=local_caller)
    teach = TeachNodes(nodes)
    builder = StateGraph(AgentState, context_schema=Context, input_schema=InputState, output_schema=OutputState)
    builder.add_node("route", nodes.route)
    builder.add_node("detect", nodes.detect)
    builder.add_node("recall", nodes.recall)
    builder.add_node("recall_memory", nodes.recall_memory)
    builder.add_node("library_retrieve", nodes.library_retrieve)
    builder.add_node("compose", nodes.compose)
    builder.add_node("compose_memory", nodes.compose_memory)
    builder.add_node("answer", RunnableLambda(nodes.answer, afunc=nodes.aanswer, name="answer"))
    builder.add_node("cite", nodes.cite)
    builder.add_node("cite_library", nodes.cite_library)
    builder.add_node("propose", teach.propose)
    builder.add_node("confirm", teach.confirm)
    builder.add_edge(START, "route")
    builder.add_conditional_edges(
        "route",
        lambda s: s["route"],
        {
            "detect": "detect",
            "compose": "compose",
            "memory": "recall_memory",
            "library": "library_retrieve",
            "teach": "propose",
        },
    )
    builder.add_edge("detect", "recall")
    builder.add_conditional_edges(
        "recall", lambda s: "propose" if s.get("intent") else "compose", ["propose", "compose"]
    )
    builder.add_conditional_edges("propose", lambda s: "confirm" if s.get("change") else END, ["confirm", END])
    builder.add_edge("confirm", END)
    builder.add_edge("library_retrieve", "compose")
    builder.add_edge("recall_memory", "compose_memory")
    for composed in ("compose", "compose_memory"):
        builder.add_conditional_edges(composed, _after_compose, ["answer", "cite", "cite_library"])
    builder.add_conditional_edges("answer", _cite, ["cite", "cite_library"])
    builder.add_edge("cite", END)
    builder.add_edge("cite_library", END)
    return builder.compile(checkpointer=checkpointer, name="rcmu-agent")


def _after_recall(state: AgentState) -> str:
    """A turn that brings a photo and names someone in it ("this is Bella, my dog") is proposed once
    the photo's regions are found; any other goes on to the question."""
    return "propose" if state.get("intent") else "compose"


def _cite(state: AgentState) -> str:
    """Library answers, and follow-ups on the library's collage, cite photos: the thread keeps the
    retrieved photos (`library_refs`) until a turn brings its own photo or asks memory alone."""
    return "cite_library" if state["route"] == "library" or state.get("library_refs") is not None else "cite"


def _after_compose(state: AgentState) -> str:
    """With `context_only` the model is not asked: straight to citing (which reports the context)."""
    return _cite(state) if state["turn"].get("context_only") else "answer"


def _serializer() -> Any:
    """The state is plain JSON plus LangChain messages: a checkpoint revives no class of ours."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=None)


def _postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgres://", "postgresql://"))


def _postgres_missing() -> RcmuError:
    return RcmuError(
        "RCMU_CHECKPOINTER names PostgreSQL, but langgraph-checkpoint-postgres is not installed",
        "pip install 'rcmu-agent[postgres]' (or unset RCMU_CHECKPOINTER to keep threads in SQLite)",
    )


def checkpointer(settings: Settings) -> Any:
    """Where threads are kept, so a `thread_id` can ask follow-ups across processes: one SQLite file
    under the home by default, or the PostgreSQL database `RCMU_CHECKPOINTER` names (the checkpointer
    LangGraph Server itself uses), for several machines or many users.

    A thread keeps only its latest checkpoint, with that checkpoint's pending writes: all a follow-up
    (`rcmu ask --thread`, `aask`) or a resume after an interrupt or a failed step reads. Each
    checkpoint holds the whole conversation, and LangGraph saves one per step (about six per turn;
    the `Assistant` asks for one per turn, `durability="exit"`), so keeping them all made a thread
    grow with the square of its turns (issue 20: 138 MB for 200 text-only follow-ups); keeping the
    latest makes it grow by one turn's two messages (~1.3 KB for a text-only turn). The price is
    time travel: older checkpoints (`get_state_history`, replaying or forking from an earlier step)
    are gone once the next one is saved. Pruning happens in the saver, on every save, so every way
    of running the graph (invoke, stream, async, the CLI, a chat, any durability) keeps threads small.
    """
    if _postgres(settings.checkpointer):
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise _postgres_missing() from None
        saver_class, _ = _postgres_savers()
        conn = psycopg.connect(str(settings.checkpointer), autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = saver_class(conn, serde=_serializer())
        saver.setup()  # idempotent: creates or migrates the tables
        return saver
    path = _sqlite_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _LatestSqliteSaver(sqlite3.connect(str(path), check_same_thread=False), serde=_serializer())


@asynccontextmanager
async def async_checkpointer(settings: Settings) -> AsyncIterator[Any]:
    """The same store for async callers, keeping the latest checkpoint alike (see `checkpointer`);
    its connection belongs to the running event loop."""
    if _postgres(settings.checkpointer):
        _, async_class = _postgres_savers()
        async with async_class.from_conn_string(str(settings.checkpointer), serde=_serializer()) as saver:
            await saver.setup()
            yield saver
        return
    import aiosqlite

    path = _sqlite_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        yield _LatestAsyncSqliteSaver(conn, serde=_serializer())


# Keep-latest for SQLite, which LangGraph's SQLite savers do not offer (PostgresSaver.prune does).
# Older than the checkpoint just saved, by id: ids grow with time, the order `get_tuple` already
# takes the latest by. Not "every other id": a run saves in the background, so the next step's
# writes, or the next checkpoint, may already be stored, and a resume needs them. Writes go by the
# same rule, whether or not their checkpoint was saved. The kept checkpoint's parent is deleted, so
# it forgets it, as PostgresSaver.prune does. Per namespace: rcmu's graph has no subgraphs.
_SQLITE_KEEP_LATEST = (
    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id < ?",
    "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id < ?",
    "UPDATE checkpoints SET parent_checkpoint_id = NULL"
    " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
)


def _saved_key(saved: RunnableConfig) -> tuple[str, str, str]:
    conf = saved["configurable"]
    return str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")), str(conf["checkpoint_id"])


class _LatestSqliteSaver(SqliteSaver):
    """`SqliteSaver` that keeps a thread's latest checkpoint only (why: `checkpointer`)."""

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved = super().put(config, checkpoint, metadata, new_versions)
        with self.cursor() as cur:  # the three in one transaction
            for sql in _SQLITE_KEEP_LATEST:
                cur.execute(sql, _saved_key(saved))
        return saved


class _LatestAsyncSqliteSaver(AsyncSqliteSaver):
    """`AsyncSqliteSaver` that keeps a thread's latest checkpoint only (why: `checkpointer`)."""

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved = await super().aput(config, checkpoint, metadata, new_versions)
        async with self.lock:
            for sql in _SQLITE_KEEP_LATEST:
                await self.conn.execute(sql, _saved_key(saved))
            await self.conn.commit()
        return saved


@functools.cache
def _postgres_savers() -> tuple[type[Any], type[Any]]:
    """`PostgresSaver` and `AsyncPostgresSaver` pruning to the latest checkpoint after each save, with
    LangGraph's own `prune(strategy="keep_latest")` (which also drops the blobs only older
    checkpoints used). Built on first use: langgraph-checkpoint-postgres is optional."""
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError:
        raise _postgres_missing() from None
    # Another process saving to the same thread meanwhile makes a prune give up; the next save prunes.
    contention = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)

    class LatestPostgresSaver(PostgresSaver):
        def put(
            self,
            config: RunnableConfig,
            checkpoint: Checkpoint,
            metadata: CheckpointMetadata,
            new_versions: ChannelVersions,
        ) -> RunnableConfig:
            saved = super().put(config, checkpoint, metadata, new_versions)
            try:
                self.prune([_saved_key(saved)[0]], strategy="keep_latest")
            except contention as exc:
                log.info("thread %s not pruned this time: %s", _saved_key(saved)[0], exc)
            return saved

    class LatestAsyncPostgresSaver(AsyncPostgresSaver):
        async def aput(
            self,
            config: RunnableConfig,
            checkpoint: Checkpoint,
            metadata: CheckpointMetadata,
            new_versions: ChannelVersions,
        ) -> RunnableConfig:
            saved = await super().aput(config, checkpoint, metadata, new_versions)
            try:
                await self.aprune([_saved_key(saved)[0]], strategy="keep_latest")
            except contention as exc:
                log.info("thread %s not pruned this time: %s", _saved_key(saved)[0], exc)
            return saved

    return LatestPostgresSaver, LatestAsyncPostgresSaver


def _sqlite_path(settings: Settings) -> Path:
    if settings.checkpointer and not _postgres(settings.checkpointer):
        return Path(str(settings.checkpointer).removeprefix("sqlite:///")).expanduser()
    return settings.home / "threads.sqlite"
