"""Threads grow linearly (issue 20, finding 5): a thread keeps its latest checkpoint (rcmu_agent.graph
`checkpointer`), a photo is kept there as a vault reference, so a text-only turn adds its two
messages and no more, on turn 1,000 as on turn 1. Storage is what the database holds live: SQLite's
pages in use, PostgreSQL's row bytes of the thread in the three checkpoint tables.

Time still grows with the thread, storage no longer does: each turn LangGraph revives the whole
conversation from the checkpoint (~40 µs per message on the 2-core machine) and saves it once, so
turn 1,000 takes ~90 ms against ~15 ms for turn 1, and the 1,000 turns ~50 s of CPU."""

from __future__ import annotations

import base64
import itertools
import operator
import sqlite3
import statistics
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Durability, interrupt
from typing_extensions import TypedDict

from rcmu_agent import Assistant, Settings
from rcmu_agent.graph import checkpointer

pytestmark = pytest.mark.integration  # a 1,000-turn thread in SQLite, 200 turns in a real PostgreSQL

NO_MODEL: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}
TURN_BYTES = 20_000  # the bound on what a text-only turn may add
WINDOW = 100  # turns averaged at each end of the thread


@pytest.fixture()
def scene(faces_dir: Path) -> Path:
    return faces_dir / "scenes" / "two_people.jpg"


def _run_thread(assistant: Assistant, scene: Path, turns: int, stored: Callable[[], int]) -> list[int]:
    """A thread of `turns` turns, the first about `scene`, the rest text-only follow-ups about it:
    the bytes stored after each turn."""
    first = assistant.ask("Who is on the left?", scene, thread_id="long", context_only=True)
    sizes = [stored()]
    for turn in range(2, turns + 1):
        later = assistant.ask(f"Turn {turn}: and what does he like?", thread_id="long", context_only=True)
        sizes.append(stored())
    assert later.photo == first.photo and first.photo is not None  # the last follow-up is still about the photo
    return sizes


def _assert_flat(sizes: list[int], window: int, name: str) -> tuple[float, float]:
    """Growth per turn at the end of the thread is what it was at the start, and under the bound."""
    growth = [after - before for before, after in itertools.pairwise(sizes)]
    first, last = statistics.fmean(growth[:window]), statistics.fmean(growth[-window:])
    print(f"{name}: {first:.0f} B/turn over the first {window} follow-ups, {last:.0f} B/turn over the last {window}")
    assert 0 < first <= TURN_BYTES and last <= TURN_BYTES, (first, last)
    # quadratic growth made the last turns cost several times the first (4x at 200 turns)
    assert last <= first * 1.15, (first, last)
    return first, last


def test_a_thousand_turns_grow_the_sqlite_file_by_the_same_bytes_each(tmp_path: Path, scene: Path) -> None:
    assistant = Assistant(Settings(home=tmp_path / "home", **NO_MODEL))
    path = tmp_path / "home" / "threads.sqlite"

    def stored() -> int:  # pages in use: freed pages are reused, so they are not growth
        with closing(sqlite3.connect(path)) as conn:
            pages, free, size = (
                conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
            )
        return int((pages - free) * size)

    started = time.perf_counter()
    sizes = _run_thread(assistant, scene, 1000, stored)
    seconds, mb = time.perf_counter() - started, sizes[-1] / 1e6
    print(f"1,000 turns in {seconds:.1f} s; {mb:.2f} MB stored, file {path.stat().st_size / 1e6:.2f} MB")
    assert sizes[0] < 100_000  # the photo (488 KB) is in the vault, not in the thread
    _assert_flat(sizes, WINDOW, "SQLite")
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)


def test_two_hundred_turns_grow_postgres_tables_by_the_same_bytes_each(
    postgres_url: str,
    tmp_path: Path,
    scene: Path,
) -> None:
    import psycopg

    assistant = Assistant(Settings(home=tmp_path / "home", checkpointer=postgres_url, **NO_MODEL))
    # the bytes of what each row keeps, before TOAST compresses them (which makes them ~12x smaller)
    values = {
        "checkpoints": "octet_length(checkpoint::text) + octet_length(metadata::text)",
        "checkpoint_blobs": "coalesce(octet_length(blob), 0)",
        "checkpoint_writes": "octet_length(blob)",
    }
    live = " + ".join(f"(SELECT coalesce(sum({v}), 0) FROM {t} WHERE thread_id = 'long')" for t, v in values.items())
    with psycopg.connect(postgres_url, autocommit=True) as conn:

        def stored() -> int:  # live rows only: deleted ones await VACUUM
            row = conn.execute(f"SELECT {live}").fetchone()
            assert row is not None
            return int(row[0])

        started = time.perf_counter()
        sizes = _run_thread(assistant, scene, 200, stored)
        print(f"200 turns in {time.perf_counter() - started:.1f} s; {sizes[-1] / 1e6:.2f} MB kept, uncompressed")
        assert sizes[0] < 100_000
        _assert_flat(sizes, 50, "PostgreSQL")
        assert conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 'long'").fetchone() == (1,)
        conn.execute("VACUUM FULL")  # the tables on disk come down to what the thread keeps
        total = conn.execute("SELECT sum(pg_total_relation_size(t)) FROM unnest(%s::regclass[]) t", (list(values),))
        on_disk = int(next(iter(total))[0])
        print(f"PostgreSQL tables after VACUUM FULL: {on_disk / 1e6:.2f} MB")
        assert on_disk < 200 * TURN_BYTES


def test_an_inline_photo_leaves_only_its_reference_in_the_thread(tmp_path: Path, scene: Path) -> None:
    """A chat front end sends the photo as base64 in the human message. Run with LangGraph's default
    durability (a checkpoint per step, the input's included), nothing of it is left in any row."""
    assistant = Assistant(Settings(home=tmp_path / "home", **NO_MODEL))
    data = base64.b64encode(scene.read_bytes()).decode()
    message = HumanMessage(
        content=[
            {"type": "text", "text": "Who is on the left?"},
            {"type": "image", "base64": data, "mime_type": "image/jpeg"},
        ]
    )
    config: RunnableConfig = {"configurable": {"thread_id": "inline"}}
    result = assistant.graph.invoke({"messages": [message], "context_only": True}, config)
    pid = result["answer"]["photo"]
    assert pid and pid.startswith("photo:")

    kept = assistant.graph.get_state(config).values["messages"][0]
    assert kept.id == message.id and kept.content == [
        {"type": "text", "text": "Who is on the left?"},
        {"type": "image", "id": pid},
    ]
    with closing(sqlite3.connect(tmp_path / "home" / "threads.sqlite")) as conn:
        rows = [r for table in ("checkpoints", "writes") for r in conn.execute(f"SELECT * FROM {table}")]
    piece = data[len(data) // 2 : len(data) // 2 + 64].encode()  # any 48 bytes of the photo, as base64
    assert rows and not any(piece in value for row in rows for value in row if isinstance(value, bytes))
    assert sum(len(v) for row in rows for v in row if isinstance(v, bytes)) < 100_000

    follow = assistant.ask("And who is on the right?", thread_id="inline", context_only=True)
    assert follow.photo == pid  # the reference still resolves: the follow-up is about the same photo


class _Steps(TypedDict):
    steps: Annotated[list[str], operator.add]


@pytest.mark.parametrize("durability", ["async", "exit"])
def test_an_interrupted_run_resumes_from_what_the_thread_keeps(tmp_path: Path, durability: Durability) -> None:
    """Keeping the latest checkpoint keeps its pending writes: a run stopped by `interrupt` resumes,
    and a step's sibling that finished before the interrupt is not run again."""
    runs: list[str] = []

    def ask_user(state: _Steps) -> dict[str, Any]:
        runs.append("ask_user")
        return {"steps": [f"asked:{interrupt('which one?')}"]}

    def sibling(state: _Steps) -> dict[str, Any]:
        runs.append("sibling")
        return {"steps": ["sibling"]}

    builder = StateGraph(_Steps)
    builder.add_node("start", lambda state: {"steps": ["start"]})
    builder.add_node("ask_user", ask_user)
    builder.add_node("sibling", sibling)
    builder.add_node("finish", lambda state: {"steps": ["finish"]})
    builder.add_edge(START, "start")
    builder.add_edge("start", "ask_user")
    builder.add_edge("start", "sibling")
    builder.add_edge(["ask_user", "sibling"], "finish")
    builder.add_edge("finish", END)
    saver = checkpointer(Settings(home=tmp_path, **NO_MODEL))
    graph = builder.compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "interrupted"}}

    stopped = graph.invoke(_Steps(steps=[]), config, durability=durability)
    assert [i.value for i in stopped["__interrupt__"]] == ["which one?"]
    with closing(sqlite3.connect(tmp_path / "threads.sqlite")) as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
    done = graph.invoke(Command(resume="the left"), config, durability=durability)
    assert sorted(done["steps"]) == sorted(["start", "asked:the left", "sibling", "finish"])
    assert runs.count("sibling") == 1  # its write was kept with the checkpoint, not redone
