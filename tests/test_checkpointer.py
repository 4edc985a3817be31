"""Threads outlive the process in the store `RCMU_CHECKPOINTER` names: SQLite by default, or a real
PostgreSQL server (started by this test from the machine's PostgreSQL binaries; `.ci/run` installs
them) through langgraph-checkpoint-postgres, unchanged."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent import Assistant, Settings

pytestmark = pytest.mark.integration  # PostgreSQL and SQLite threads through the graph

NO_MODEL: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("home")
    teacher = Assistant(Settings(home=home, **NO_MODEL))
    teacher.remember("Barack Obama", info="44th president", photos=[faces_dir / "reference" / "obama_obama.jpg"])
    return home


def _follow_up_across_instances(settings: Settings, scene: Path, thread: str) -> None:
    first = Assistant(settings).ask("Who is on the left?", scene, thread_id=thread, context_only=True)
    later = Assistant(settings).ask("And what does he like?", thread_id=thread, context_only=True)  # a new process
    assert first.photo and first.photo.startswith("photo:") and later.photo == first.photo  # the vault id
    assert [r.name for r in later.regions] == [r.name for r in first.regions] and "44th president" in later.prompt
    later_async = asyncio.run(Assistant(settings).aask("Anything else?", thread_id=thread, context_only=True))
    assert later_async.photo == first.photo


def test_threads_in_postgres(postgres_url: str, home: Path, faces_dir: Path) -> None:
    settings = Settings(home=home, checkpointer=postgres_url, **NO_MODEL)
    _follow_up_across_instances(settings, faces_dir / "scenes" / "two_people.jpg", "pg-thread")
    assert not (home / "threads.sqlite").exists()  # nothing fell back to the local file

    import psycopg

    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 'pg-thread'").fetchone()
    assert rows is not None and rows[0] == 1  # the latest checkpoint only: a thread grows by its turns, no more


def test_threads_in_a_chosen_sqlite_file(tmp_path: Path, home: Path, faces_dir: Path) -> None:
    settings = Settings(home=home, checkpointer=str(tmp_path / "threads" / "t.sqlite"), **NO_MODEL)
    _follow_up_across_instances(settings, faces_dir / "scenes" / "two_people.jpg", "file-thread")
    with closing(sqlite3.connect(tmp_path / "threads" / "t.sqlite")) as conn:
        rows = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 'file-thread'").fetchone()
    assert rows == (1,)  # the latest checkpoint only
