"""The photo library's sidecar: photos, their paths, regions and face clusters, in one SQLite file.

SQLite (WAL) holds what is relational and must survive a kill between two photos: each indexed photo
is one transaction, so a killed run keeps every photo it finished. The vectors live in Chroma:
a photo's image embedding is written before its row; its text embedding is written in batches after it
(`embedded` = 0 until then; a run, or a search, embeds what a killed run left pending). An orphan
vector from a kill is overwritten when the photo is indexed again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LibraryDB", "RegionRow"]

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


class LibraryDB:
    """Thin, typed access to the sidecar. Every method is one statement or one short transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses no commit
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self._conn.execute(sql, tuple(params))

    # ---- meta ------------------------------------------------------------------------------------
    def get_meta(self, user: str, key: str) -> str | None:
        got = self.rows("SELECT value FROM meta WHERE user=? AND key=?", (user, key))
        return got[0]["value"] if got else None

    def set_meta(self, conn: sqlite3.Connection, user: str, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (user, key, value) VALUES (?, ?, ?)", (user, key, value))

    # ---- paths -----------------------------------------------------------------------------------
    def paths_under(self, user: str, root: str) -> dict[str, sqlite3.Row]:
        return {r["rel"]: r for r in self.rows("SELECT * FROM paths WHERE user=? AND root=?", (user, root))}

    def bad_under(self, user: str, root: str) -> dict[str, sqlite3.Row]:
        return {r["rel"]: r for r in self.rows("SELECT * FROM bad_files WHERE user=? AND root=?", (user, root))}

    def paths_of(self, user: str, photo_ids: Sequence[str]) -> dict[str, list[str]]:
        """Absolute paths of each photo's copies, in a stable order."""
        out: dict[str, list[str]] = {}
        for chunk in _chunks(photo_ids):
            marks = ",".join("?" * len(chunk))
            for r in self.rows(
                f"SELECT photo_id, root, rel FROM paths WHERE user=? AND photo_id IN ({marks}) ORDER BY root, rel",
                (user, *chunk),
            ):
                out.setdefault(r["photo_id"], []).append(str(Path(r["root"]) / r["rel"]))
        return out

    def has_photo(self, user: str, photo_id: str) -> bool:
        return bool(self.rows("SELECT 1 FROM photos WHERE user=? AND id=?", (user, photo_id)))

    # ---- regions ---------------------------------------------------------------------------------
    def regions_of(self, user: str, photo_ids: Sequence[str]) -> dict[str, list[sqlite3.Row]]:
        out: dict[str, list[sqlite3.Row]] = {}
        for chunk in _chunks(photo_ids):
            marks = ",".join("?" * len(chunk))
            for r in self.rows(
                f"SELECT * FROM regions WHERE user=? AND photo_id IN ({marks}) ORDER BY x1, y1, id", (user, *chunk)
            ):
                out.setdefault(r["photo_id"], []).append(r)
        return out

    def photos(self, user: str, photo_ids: Sequence[str]) -> dict[str, sqlite3.Row]:
        out: dict[str, sqlite3.Row] = {}
        for chunk in _chunks(photo_ids):
            marks = ",".join("?" * len(chunk))
            for r in self.rows(f"SELECT * FROM photos WHERE user=? AND id IN ({marks})", (user, *chunk)):
                out[r["id"]] = r
        return out

    def count_photos(self, user: str) -> int:
        return int(self.rows("SELECT COUNT(*) AS n FROM photos WHERE user=?", (user,))[0]["n"])

    def delete_photo(self, conn: sqlite3.Connection, user: str, photo_id: str) -> None:
        conn.execute("DELETE FROM regions WHERE user=? AND photo_id=?", (user, photo_id))
        conn.execute("DELETE FROM photos WHERE user=? AND id=?", (user, photo_id))
        conn.execute("DELETE FROM paths WHERE user=? AND photo_id=?", (user, photo_id))


def encode_vector(vector: Sequence[float] | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()


def decode_vector(blob: bytes | None) -> list[float] | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).astype(float).tolist()


def _chunks(items: Sequence[str], size: int = 900) -> Iterator[Sequence[str]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]
