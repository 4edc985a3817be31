"""The photo library's sidecar: photos, their paths, regions and face clusters, in one database.

The database holds what is relational and must survive a kill between two photos: each indexed photo
is one transaction, so a killed run keeps every photo it finished. The vectors live in Chroma:
a photo's image embedding is written before its row; its text embedding is written in batches after it
(`embedded` = 0 until then; a run, or a search, embeds what a killed run left pending). An orphan
vector from a kill is overwritten when the photo is indexed again.

One machine keeps the sidecar in SQLite (WAL) under `RCMU_HOME/library`; replicas of a shared
deployment (`RCMU_DATABASE_URL`) keep it in PostgreSQL (`_library_pg`), so a library indexed through
one is searched through any other. The SQL is written once, in what both accept: `?` placeholders
(translated for PostgreSQL in one place), the `"user"` column always quoted (unquoted, PostgreSQL reads
`user` as CURRENT_USER — every statement is checked for it), upserts with ON CONFLICT, new ids with
RETURNING.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rcmu_agent.memory.library._sql import Backend, Row, Tx, checked_sql

if TYPE_CHECKING:
    from rcmu_agent.settings import Settings

__all__ = ["LibraryDB", "RegionRow", "Row", "SqliteBackend", "Tx", "checked_sql"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    user TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL, width INTEGER, height INTEGER,
    bytes INTEGER, taken_at TEXT, lat REAL, lon REAL, rel TEXT NOT NULL DEFAULT '',
    context TEXT NOT NULL DEFAULT '', embedded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, id));
CREATE INDEX IF NOT EXISTS photos_taken ON photos (user, taken_at);
CREATE INDEX IF NOT EXISTS photos_pending ON photos (user) WHERE embedded = 0;
CREATE TABLE IF NOT EXISTS paths (
    user TEXT NOT NULL, root TEXT NOT NULL, rel TEXT NOT NULL, photo_id TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, PRIMARY KEY (user, root, rel));
CREATE INDEX IF NOT EXISTS paths_photo ON paths (user, photo_id);
CREATE TABLE IF NOT EXISTS bad_files (
    user TEXT NOT NULL, root TEXT NOT NULL, rel TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (user, root, rel));
CREATE TABLE IF NOT EXISTS regions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, photo_id TEXT NOT NULL,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL, category TEXT NOT NULL, score REAL, source TEXT NOT NULL,
    descriptor BLOB, entity_id TEXT, name TEXT, name_key TEXT, distance REAL,
    named_by TEXT, cluster_id INTEGER);
CREATE INDEX IF NOT EXISTS regions_photo ON regions (user, photo_id);
CREATE INDEX IF NOT EXISTS regions_name ON regions (user, name_key);
CREATE INDEX IF NOT EXISTS regions_cluster ON regions (user, cluster_id);
CREATE TABLE IF NOT EXISTS clusters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, name TEXT, entity_id TEXT);
CREATE TABLE IF NOT EXISTS meta (user TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (user, key));
"""

RegionRow = dict[str, Any]

_PUT_PHOTO = (
    'INSERT INTO photos ("user", id, sha256, width, height, bytes, taken_at, lat, lon, rel, context, embedded) '
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("user", id) DO UPDATE SET sha256=excluded.sha256, '
    "width=excluded.width, height=excluded.height, bytes=excluded.bytes, taken_at=excluded.taken_at, "
    "lat=excluded.lat, lon=excluded.lon, rel=excluded.rel, context=excluded.context, embedded=excluded.embedded"
)
_PUT_PATH = (
    'INSERT INTO paths ("user", root, rel, photo_id, size, mtime_ns) VALUES (?, ?, ?, ?, ?, ?) '
    'ON CONFLICT ("user", root, rel) DO UPDATE SET photo_id=excluded.photo_id, size=excluded.size, '
    "mtime_ns=excluded.mtime_ns"
)
_PUT_BAD = (
    'INSERT INTO bad_files ("user", root, rel, size, mtime_ns, reason) VALUES (?, ?, ?, ?, ?, ?) '
    'ON CONFLICT ("user", root, rel) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, '
    "reason=excluded.reason"
)


class _CheckedSqlite:
    """A SQLite connection whose statements pass `checked_sql` first."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> sqlite3.Cursor:
        return self._conn.execute(checked_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:
        return self._conn.executemany(checked_sql(sql), rows)


class SqliteBackend:
    """The sidecar as one SQLite file (WAL): a killed process loses no commit."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._checked = _CheckedSqlite(self._conn)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses no commit
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._checked
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return self._checked.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self._checked.execute(sql, params)


class LibraryDB:
    """Thin, typed access to the sidecar. Every method is one statement or one short transaction."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def open(cls, settings: Settings) -> LibraryDB:
        """PostgreSQL when the deployment is shared (`database_url`), else SQLite under `home/library`."""
        return cls.of(settings.home, settings.database_url)

    @classmethod
    def of(cls, home: Path, database_url: str | None) -> LibraryDB:
        if database_url:
            from rcmu_agent.memory.library._pg import PostgresBackend

            return cls(PostgresBackend(database_url))
        return cls(SqliteBackend(home / "library" / "library.sqlite"))

    @classmethod
    def existing(cls, home: Path, database_url: str | None) -> LibraryDB | None:
        """The sidecar `of` gives, or None where an embedded one was never made: a reader (`rcmu export
        --library`) leaves no empty sidecar behind."""
        if database_url or (home / "library" / "library.sqlite").is_file():
            return cls.of(home, database_url)
        return None

    def close(self) -> None:
        self.backend.close()

    def transaction(self) -> AbstractContextManager[Tx]:
        return self.backend.transaction()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.backend.rows(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.backend.execute(sql, params)

    # ---- meta ------------------------------------------------------------------------------------
    def get_meta(self, user: str, key: str) -> str | None:
        got = self.rows('SELECT value FROM meta WHERE "user"=? AND key=?', (user, key))
        return got[0]["value"] if got else None

    def set_meta(self, conn: Tx, user: str, key: str, value: str) -> None:
        conn.execute(
            'INSERT INTO meta ("user", key, value) VALUES (?, ?, ?) ON CONFLICT ("user", key) '
            "DO UPDATE SET value=excluded.value",
            (user, key, value),
        )

    # ---- writes written once for both backends ---------------------------------------------------
    def put_photo(self, conn: Tx, row: Sequence[Any]) -> None:
        """Insert or replace a photo: ("user", id, sha256, width, height, bytes, taken_at, lat, lon, rel,
        context, embedded)."""
        conn.execute(_PUT_PHOTO, row)

    def put_path(self, conn: Tx, row: Sequence[Any]) -> None:
        """Insert or replace a path: ("user", root, rel, photo_id, size, mtime_ns)."""
        conn.execute(_PUT_PATH, row)

    def put_bad(self, conn: Tx, row: Sequence[Any]) -> None:
        """Insert or replace a file that failed: ("user", root, rel, size, mtime_ns, reason)."""
        conn.execute(_PUT_BAD, row)

    @staticmethod
    def new_cluster(conn: Tx, user: str) -> int:
        """A new, empty face cluster's id."""
        return int(conn.execute('INSERT INTO clusters ("user") VALUES (?) RETURNING id', (user,)).fetchone()["id"])

    # ---- paths -----------------------------------------------------------------------------------
    def paths_under(self, user: str, root: str) -> dict[str, Row]:
        return {r["rel"]: r for r in self.rows('SELECT * FROM paths WHERE "user"=? AND root=?', (user, root))}

    def bad_under(self, user: str, root: str) -> dict[str, Row]:
        return {r["rel"]: r for r in self.rows('SELECT * FROM bad_files WHERE "user"=? AND root=?', (user, root))}

    def paths_of(self, user: str, photo_ids: Sequence[str]) -> dict[str, list[str]]:
        """Absolute paths of each photo's copies, in a stable order."""
        out: dict[str, list[str]] = {}
        for chunk in _chunks(photo_ids):
            marks = ",".join("?" * len(chunk))
            for r in self.rows(
                f'SELECT photo_id, root, rel FROM paths WHERE "user"=? AND photo_id IN ({marks}) ORDER BY root, rel',
                (user, *chunk),
            ):
                out.setdefault(r["photo_id"], []).append(str(Path(r["root"]) / r["rel"]))
        return out

    def has_photo(self, user: str, photo_id: str) -> bool:
        return bool(self.rows('SELECT 1 FROM photos WHERE "user"=? AND id=?', (user, photo_id)))

    # ---- regions ---------------------------------------------------------------------------------
    def regions_of(self, user: str, photo_ids: Sequence[str]) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = {}
        for chunk in _chunks(photo_ids):
            marks = ",".join("?" * len(chunk))
            for r in self.rows(
                f'SELECT * FROM regions WHERE "user"=? AND photo_id IN ({marks}) ORDER BY x1, y1, id', (user, *chunk)
            ):
                out.setdefault(r["photo_id"], []).append(r)
        return out

    def photos(self, user: str, photo_ids: Sequence[str]) -> dict[str, Row]:
        out: dict[str, Row] = {}
        for chunk in _chunks(photo_ids):
            marks = ",".join("?" * len(chunk))
            for r in self.rows(f'SELECT * FROM photos WHERE "user"=? AND id IN ({marks})', (user, *chunk)):
                out[r["id"]] = r
        return out

    def count_photos(self, user: str) -> int:
        return int(self.rows('SELECT COUNT(*) AS n FROM photos WHERE "user"=?', (user,))[0]["n"])

    def delete_photo(self, conn: Tx, user: str, photo_id: str) -> None:
        conn.execute('DELETE FROM regions WHERE "user"=? AND photo_id=?', (user, photo_id))
        conn.execute('DELETE FROM photos WHERE "user"=? AND id=?', (user, photo_id))
        conn.execute('DELETE FROM paths WHERE "user"=? AND photo_id=?', (user, photo_id))


def encode_vector(vector: Sequence[float] | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()


def decode_vector(blob: bytes | None) -> list[float] | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).astype(float).tolist()


def _chunks(items: Sequence[str], size: int = 900) -> Iterator[Sequence[str]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]
