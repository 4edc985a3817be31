"""PostgreSQL as the store that replicas share: photo bytes and the writers' locks.

One machine keeps everything under `RCMU_HOME` (a folder vault, file locks). Several server replicas
on machines that share no disk keep it in the database `RCMU_DATABASE_URL` names, the same PostgreSQL
LangGraph Server brings for its threads:

- `Statements` runs one owner's SQL: a connection per thread, its tables created on first use;
- `PostgresBlobs` is the vault's `BlobStore` in one table, so a photo taken in through one replica is
  read by id through any other;
- `advisory_lock` serialises writers across machines where one machine takes a file lock. A session
  advisory lock dies with its connection, so a replica killed mid-write (`kill -9`) leaves no stale
  lock behind, just as a file lock dies with its process.

psycopg is imported on first use: it is the optional `postgres` extra.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rcmu_agent.errors import ModelLoadError, RcmuError

__all__ = ["PostgresBlobs", "Statements", "advisory_lock", "connect", "is_postgres_url", "shown_url"]

_INHERITED: list[Any] = []  # a forked child's copies of its parent's connections: kept, never used
_BLOBS = """
CREATE TABLE IF NOT EXISTS rcmu_blobs (
    key TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


def is_postgres_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("postgres://", "postgresql://"))


def shown_url(url: str) -> str:
    """The URL as messages may show it: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, *, autocommit: bool = True) -> Any:
    """A psycopg connection, or an error saying what to install or start."""
    try:
        import psycopg
    except ImportError:
        raise ModelLoadError(
            "PostgreSQL storage needs psycopg, which is not installed", "pip install 'rcmu-agent[postgres]'"
        ) from None
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10, prepare_threshold=None)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RcmuError(
            f"cannot reach PostgreSQL at {shown_url(url)}: {first}",
            "start the database (or fix RCMU_DATABASE_URL), or unset RCMU_DATABASE_URL to keep everything "
            "under RCMU_HOME",
        ) from exc


class Statements:
    """SQL on one database for one owner (a store): a connection per thread (psycopg connections are not
    shared between threads), the owner's tables created on first use, and a connection the server
    dropped (a restart) opened again once.

    Replicas starting together would race on `CREATE TABLE IF NOT EXISTS` (PostgreSQL then fails one
    with a duplicate type), so the tables are created under a transaction-scoped advisory lock. A forked
    child (the crash tests' readers, worker pools) opens a connection of its own and never touches its
    parent's: both querying one socket at once interleave their messages and wait for ever."""

    def __init__(self, url: str, schema: Sequence[str] = ()) -> None:
        self.url = url
        self.schema = tuple(schema)
        self._local = threading.local()
        self._ready = not self.schema

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) != os.getpid():
            _INHERITED.append(conn)
            conn = None
        if conn is None or conn.closed:
            conn = self._local.conn = connect(self.url)
            self._local.pid = os.getpid()
            if not self._ready:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id("rcmu schema"),))
                    for statement in self.schema:
                        conn.execute(statement)
                self._ready = True
        return conn

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """One statement (autocommitted): its cursor."""
        import psycopg

        try:
            return self._conn().execute(sql, params)
        except psycopg.OperationalError:
            self._local.conn = None
            return self._conn().execute(sql, params)


class PostgresBlobs:
    """A vault `BlobStore` in one table (`rcmu_blobs`). Keys are content addresses, so a second put of
    the same key writes nothing; a put is one statement, whole or absent after a kill."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sql = Statements(url, [_BLOBS])

    def _run(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._sql.run(sql, params)

    def put(self, key: str, data: bytes) -> None:
        self._run("INSERT INTO rcmu_blobs (key, data) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, data))

    def get(self, key: str) -> bytes | None:
        row = self._run("SELECT data FROM rcmu_blobs WHERE key = %s", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def exists(self, key: str) -> bool:
        return self._run("SELECT 1 FROM rcmu_blobs WHERE key = %s", (key,)).fetchone() is not None

    def delete(self, key: str) -> None:
        self._run("DELETE FROM rcmu_blobs WHERE key = %s", (key,))


def _lock_id(name: str) -> int:
    """A stable signed 64-bit id for a lock name (PostgreSQL's advisory locks take a bigint)."""
    high, low = zlib.crc32(b"rcmu:" + name.encode()), zlib.crc32(name.encode())
    value = (high << 32) | low
    return value - (1 << 64) if value >= 1 << 63 else value


@contextlib.contextmanager
def advisory_lock(url: str, name: str, timeout: float, busy: Callable[[], RcmuError]) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock `name` for the block: one holder across every replica.

    A second holder tries for `timeout` seconds, backing off, then raises `busy()`. The lock lives on a
    connection of its own, so it ends with the holder's process however that ends.
    """
    conn = connect(url)
    try:
        key = _lock_id(name)
        deadline = time.monotonic() + timeout
        pause = 0.02
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise busy()
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a dropped connection has released it already
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()
