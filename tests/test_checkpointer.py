"""Threads outlive the process in the store `RCMU_CHECKPOINTER` names: SQLite by default, or a real
PostgreSQL server (started by this test from the machine's PostgreSQL binaries; `.ci/run` installs
them) through langgraph-checkpoint-postgres, unchanged."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent import Assistant, Settings

pytestmark = pytest.mark.integration  # PostgreSQL and SQLite threads through the graph

NO_MODEL: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; tests on CI do run as root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    assert binaries, "PostgreSQL server binaries are missing: apt-get install postgresql (as .ci/run does)"
    bindir = binaries[-1].parent
    data = Path(tempfile.mkdtemp(prefix="rcmu-pg-"))  # under /tmp: the postgres user can reach it
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    server = subprocess.Popen(
        _as_postgres([str(bindir / "postgres"), "-D", str(data / "db"), "-p", str(port), "-k", str(data), *options]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


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
