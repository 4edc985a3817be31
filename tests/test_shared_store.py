"""Replicas share photos and writers' locks through PostgreSQL (`RCMU_DATABASE_URL`): a photo taken in
through one home is read by id through another, never by another user, and a writer on one machine
holds every other back until it finishes or dies (a real PostgreSQL server, started by the fixture)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rcmu_agent import Settings
from rcmu_agent.door import Inbound
from rcmu_agent.errors import MemoryLockedError, NotFoundError
from rcmu_agent.parts import Parts
from rcmu_agent.postgres import PostgresBlobs, advisory_lock, shown_url

HOLD = """
import sys, time
from rcmu_agent.memory._client import write_lock
from pathlib import Path
with write_lock(Path(sys.argv[1]), 5, sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def _busy() -> MemoryLockedError:
    return MemoryLockedError("busy", "wait")


@pytest.mark.integration
def test_a_photo_taken_in_by_one_replica_is_read_by_id_through_another(
    tmp_path: Path,
    postgres_url: str,
) -> None:
    data = (Path(__file__).parent / "data" / "two_people.jpg").read_bytes()
    first = Parts(Settings(home=tmp_path / "a", database_url=postgres_url))
    second = Parts(Settings(home=tmp_path / "b", database_url=postgres_url))
    pid = first.photos.ingest("alice", Inbound(data, "two_people.jpg"))
    assert second.vault.get("alice", pid) == data
    assert second.photos.image("alice", pid).size == first.photos.image("alice", pid).size
    assert not (tmp_path / "a" / "vault").exists() and not (tmp_path / "b" / "vault").exists()
    with pytest.raises(NotFoundError, match="no such photo"):
        second.vault.get("bob", pid)
    assert first.photos.ingest("alice", Inbound(data, "again.jpg")) == pid  # content-addressed: stored once
    blobs = PostgresBlobs(postgres_url)
    key = f"alice/{pid[6:8]}/{pid[6:]}"
    assert blobs.exists(key) and not blobs.exists(f"bob/{pid[6:8]}/{pid[6:]}")
    blobs.delete(key)
    with pytest.raises(NotFoundError):
        second.vault.get("alice", pid)


@pytest.mark.integration
def test_a_writer_on_one_replica_holds_the_others_back_until_it_ends_even_by_kill_9(
    tmp_path: Path,
    postgres_url: str,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "other-home"), postgres_url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(MemoryLockedError, match="another replica is writing"):
            from rcmu_agent.memory._client import write_lock

            with write_lock(tmp_path / "my-home", 0.6, postgres_url):
                pass
        assert time.monotonic() - started >= 0.5  # it waited its timeout, then said why
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with advisory_lock(postgres_url, "memory", 20, _busy):  # the server ended the dead session's lock
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.integration
def test_two_locks_of_different_names_do_not_block_each_other(postgres_url: str) -> None:
    with (
        advisory_lock(postgres_url, "memory", 1, _busy),
        advisory_lock(postgres_url, "library", 1, _busy),
        pytest.raises(MemoryLockedError),
        advisory_lock(postgres_url, "memory", 0.2, _busy),  # the same name again: busy
    ):
        pass


@pytest.mark.unit
def test_the_database_setting_takes_postgresql_urls_only_and_messages_hide_the_password() -> None:
    with pytest.raises(ValueError, match="postgresql:// URL"):
        Settings(database_url="sqlite:///x.db")
    assert Settings(database_url="  ").database_url is None
    assert shown_url("postgresql://rcmu:s3cret@db.example:5432/rcmu") == "postgresql://rcmu:***@db.example:5432/rcmu"
    assert shown_url("postgresql://postgres@127.0.0.1:5432/postgres").endswith("127.0.0.1:5432/postgres")


@pytest.mark.integration
def test_replicas_starting_together_create_the_tables_once_without_a_race(tmp_path: Path, postgres_server: str) -> None:
    """Bare `CREATE TABLE IF NOT EXISTS` from 8 connections at once fails some of them (duplicate
    pg_type rows, measured: 13 of 40); the stores create their tables under an advisory lock."""
    import threading
    import uuid

    import psycopg

    from rcmu_agent.memory._references import memory_storage

    for _ in range(3):
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
        start, errors = threading.Barrier(8), []

        def replica(n: int, url: str = url, start: threading.Barrier = start, errors: list[str] = errors) -> None:
            start.wait()
            try:
                if n % 2:
                    PostgresBlobs(url).put(f"u{n}/ab/{'ab' * 16}", b"x")
                else:
                    references, journal = memory_storage(tmp_path, url)
                    references.put(f"u{n}", "e1", b"photo", ".jpg")
                    journal.read()
            except Exception as exc:  # every failure is the finding
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=replica, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with psycopg.connect(url) as conn:
            counted = [
                conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in ("rcmu_blobs", "rcmu_reference_photos")
            ]
        assert counted == [(4,), (4,)]
    assert not (tmp_path / "photos").exists()


@pytest.mark.integration
def test_a_forked_child_uses_a_connection_of_its_own_and_leaves_its_parents_alone(postgres_url: str) -> None:
    """Parent and child query at the same time: on one shared socket their messages would interleave."""
    blobs = PostgresBlobs(postgres_url)
    key = f"alice/ab/{'ab' * 16}"
    blobs.put(key, b"parent")  # the parent's connection is open
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)  # interleaved on one socket, both sides can wait forever: fail instead
        try:
            ok = all(blobs.get(key) == b"parent" for _ in range(300))
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)

    def stuck(*_: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise TimeoutError("the parent's connection stopped answering while the child queried")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(60)
    try:
        assert all(blobs.get(key) == b"parent" for _ in range(300))
        _, status = os.waitpid(pid, 0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert os.waitstatus_to_exitcode(status) == 0
