"""The agent as a LangGraph graph: route → detect → recall → compose → answer → cite.

A question over the photo library takes route → library_retrieve → compose → answer → cite_library:
the retrieved photos become one collage with their regions as context (`rcmu_agent.collage`), and
citations resolve to photos. A question with no photo takes route → recall_memory → compose_memory →
answer → cite. A follow-up about the thread's photo goes from route straight to compose (and, after a
library question, on to cite_library: the follow-up is about the same photos). With
`context_only`, compose goes straight to citing. Every route is its own path of nodes, so LangGraph
Studio's picture of the graph shows all of them.

This is the only module that knows the order of the steps (`rcmu_agent._nodes` holds the steps,
`rcmu_agent.state` the schemas). Messages in, an AI message out: the graph sits behind any chat front
end, and `stream_mode="messages"` streams the answer token by token.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from rcmu_agent._nodes import Nodes
from rcmu_agent.errors import RcmuError
from rcmu_agent.parts import Parts
from rcmu_agent.settings import Settings
from rcmu_agent.state import AgentState, Context, InputState, OutputState

__all__ = ["async_checkpointer", "build_graph", "checkpointer"]


def build_graph(parts: Parts | None = None, *, checkpointer: Any = None, local_caller: bool = False) -> Any:
    """Compile the agent. `parts` defaults to everything built from `Settings()` (the environment).

    `local_caller=True` is for the machine's own user (the CLI, Python code): photos may be paths
    anywhere and the run's context names the user. The default suits servers: images arrive inline
    and the user comes from authentication (or is the deployment's one user).
    """
    nodes = Nodes(parts or Parts(), local_caller=local_caller)
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
    builder.add_edge(START, "route")
    builder.add_conditional_edges(
        "route",
        lambda s: s["route"],
        {"detect": "detect", "compose": "compose", "memory": "recall_memory", "library": "library_retrieve"},
    )
    builder.add_edge("detect", "recall")
    builder.add_edge("recall", "compose")
    builder.add_edge("library_retrieve", "compose")
    builder.add_edge("recall_memory", "compose_memory")
    for composed in ("compose", "compose_memory"):
        builder.add_conditional_edges(composed, _after_compose, ["answer", "cite", "cite_library"])
    builder.add_conditional_edges("answer", _cite, ["cite", "cite_library"])
    builder.add_edge("cite", END)
    builder.add_edge("cite_library", END)
    return builder.compile(checkpointer=checkpointer, name="rcmu-agent")


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
    LangGraph Server itself uses), for several machines or many users."""
    if _postgres(settings.checkpointer):
        try:
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row
        except ImportError:
            raise _postgres_missing() from None
        conn = psycopg.connect(str(settings.checkpointer), autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn, serde=_serializer())
        saver.setup()  # idempotent: creates or migrates the tables
        return saver
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = _sqlite_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False), serde=_serializer())


@asynccontextmanager
async def async_checkpointer(settings: Settings) -> AsyncIterator[Any]:
    """The same store for async callers; its connection belongs to the running event loop."""
    if _postgres(settings.checkpointer):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError:
            raise _postgres_missing() from None
        async with AsyncPostgresSaver.from_conn_string(str(settings.checkpointer), serde=_serializer()) as saver:
            await saver.setup()
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = _sqlite_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        yield AsyncSqliteSaver(conn, serde=_serializer())


def _sqlite_path(settings: Settings) -> Path:
    if settings.checkpointer and not _postgres(settings.checkpointer):
        return Path(str(settings.checkpointer).removeprefix("sqlite:///")).expanduser()
    return settings.home / "threads.sqlite"
