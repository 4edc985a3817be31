"""What every part of the photo library shares: the sidecar, the Chroma collections, the index lock
and each photo's context text (the line MiniLM embeds for text search).

One machine keeps the sidecar and the lock under `RCMU_HOME/library` (SQLite, a file lock). Replicas
of a shared deployment (`RCMU_DATABASE_URL`) keep the sidecar in PostgreSQL and take PostgreSQL's
advisory lock, so an index through one replica holds back an index through any other and dies with
its process; what stays under `RCMU_HOME/library` then is a cache (face crops), made again when missing."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import MemoryLockedError
from rcmu_agent.memory._client import collection, open_client
from rcmu_agent.memory.library._db import LibraryDB, Row, Tx
from rcmu_agent.memory.text_embedder import TextEmbedder

if TYPE_CHECKING:
    from rcmu_agent.settings import Settings

__all__ = ["IMAGE_COLLECTION", "PENDING", "TEXT_COLLECTION", "LibraryStore", "context_text", "position"]

log = logging.getLogger(__name__)
TEXT_COLLECTION, IMAGE_COLLECTION = "library_text", "library_images"
PENDING = 16  # photos whose text vectors are written together while indexing


def position(box: Sequence[float], width: int) -> str:
    """Where a region sits, in words a search can match: left, centre or right of the photo."""
    centre = (box[0] + box[2]) / 2 / max(width, 1)
    return "left" if centre < 0.4 else "right" if centre > 0.6 else "centre"


def context_text(
    rel: str, width: int, taken_at: datetime | None, place: tuple[float, float] | None, regions: Sequence[Any]
) -> str:
    """The photo in one line of text (what MiniLM embeds for text search), e.g.
    "Obama (person) at left; unknown person at right; taken 2024-05-01 10:00 (May 2024); in trips/paris/a.jpg"."""
    parts = []
    for r in sorted(regions, key=lambda r: r["x1"]):
        who = r["name"] or f"unknown {r['category']}"
        parts.append(f"{who} ({r['category']}) at {position((r['x1'], r['y1'], r['x2'], r['y2']), width)}")
    if taken_at is not None:
        parts.append(f"taken {taken_at:%Y-%m-%d %H:%M} ({taken_at:%B %Y})")
    if place is not None:
        parts.append(f"place {place[0]:.4f},{place[1]:.4f}")
    folder, _, name = rel.rpartition("/")
    parts.append(f"in {folder.replace('/', ' / ').replace('_', ' ')} / {name}" if folder else f"file {name}")
    return "; ".join(parts)


class LibraryStore:
    """The library's storage for every user under one home (or one shared deployment): the sidecar
    (`db`), the text and image vectors in Chroma (`col`), and the lock that lets one writer (an index
    or a cluster edit) run at a time. Indexing, search and clusters all work through one instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "library"
        self._db: LibraryDB | None = None
        self._client: Any = None
        self._cols: dict[str, Any] = {}
        self.text = TextEmbedder()

    @property
    def db(self) -> LibraryDB:
        if self._db is None:
            self._db = LibraryDB.open(self.settings)
        return self._db

    def col(self, name: str) -> Any:
        if name not in self._cols:
            if self._client is None:
                self._client = open_client(self.settings.home, self.settings.chroma_url)
            model = self.text.model_name if name == TEXT_COLLECTION else self.settings.image_embedding_model or "none"
            self._cols[name] = collection(self._client, name, model, "cosine")
        return self._cols[name]

    def crop_path(self, user: str, face: Row) -> Path:
        """Where a face's crop is cached. Shared, region ids belong to the database, not the home: the
        name carries the photo too, so a home that served another database never shows a stale crop."""
        if self.settings.database_url:
            return self.dir / "cache" / "crops" / user / f"face{int(face['id'])}-{face['photo_id']}.jpg"
        return self.dir / "crops" / user / f"face{int(face['id'])}.jpg"

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """One indexer (or cluster edit) per home — per deployment when shared; a second waits
        `lock_timeout`, then is told who runs."""
        wait = self.settings.lock_timeout if timeout is None else timeout
        if self.settings.database_url:
            with self._shared_lock(self.settings.database_url, wait):
                yield
            return
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.dir / "index.lock"), timeout=wait)
        pid_file = self.dir / "index.pid"
        try:
            lock.acquire()
        except Timeout as exc:
            pid = pid_file.read_text().strip() if pid_file.exists() else "unknown"
            raise MemoryLockedError(
                f"an index of the photo library at {self.dir} is running (pid {pid})",
                "wait for it to finish (a later run continues where it stopped), or raise RCMU_LOCK_TIMEOUT",
            ) from exc
        try:
            pid_file.write_text(str(os.getpid()))
            yield
        finally:
            pid_file.unlink(missing_ok=True)
            lock.release()

    @contextlib.contextmanager
    def _shared_lock(self, url: str, wait: float) -> Iterator[None]:
        """PostgreSQL's session advisory lock "library"; the holder is written down for the busy message."""
        from rcmu_agent.postgres import advisory_lock

        def busy() -> MemoryLockedError:  # the holder's pid, and whether it runs here (never the host's name)
            pid, _, host = (self.db.get_meta("", "index_holder") or "unknown@").partition("@")
            where = "" if host == socket.gethostname() else " on another replica"
            return MemoryLockedError(
                f"an index of the shared photo library is running (pid {pid}{where})",
                "wait for it to finish (a later run continues where it stopped), or raise RCMU_LOCK_TIMEOUT",
            )

        with advisory_lock(url, "library", wait, busy):
            with self.db.transaction() as conn:
                self.db.set_meta(conn, "", "index_holder", f"{os.getpid()}@{socket.gethostname()}")
            yield

    # ---- vectors ---------------------------------------------------------------------------------
    def write_text_vectors(self, user: str, ids: Sequence[str], contexts: Sequence[str], vectors: Any = None) -> None:
        """Upsert the MiniLM vectors of `contexts` (or the given `vectors`: imports, benchmarks)."""
        if ids:
            self.col(TEXT_COLLECTION).upsert(
                ids=[f"{user}:{i}" for i in ids],
                embeddings=self.text.embed(contexts) if vectors is None else vectors,
                metadatas=[{"user": user, "photo_id": i} for i in ids],
                documents=list(contexts),
            )

    def embed_pending(self, user: str, *, at_least: int = 1) -> int:
        """Write the text vectors of photos committed without them, in batches (one MiniLM call and one
        Chroma upsert per batch: per photo, the model call would cost more than the photo's rows)."""
        done = 0
        while True:
            rows = self.db.rows(
                'SELECT id, context FROM photos WHERE "user"=? AND embedded=0 LIMIT ?', (user, max(at_least, PENDING))
            )
            if len(rows) < at_least or not rows:
                return done
            ids = [r["id"] for r in rows]
            self.write_text_vectors(user, ids, [r["context"] for r in rows])
            with self.db.transaction() as conn:
                marks = ",".join("?" * len(ids))
                conn.execute(f'UPDATE photos SET embedded=1 WHERE "user"=? AND id IN ({marks})', (user, *ids))
                self.bump(conn, user)
            done += len(ids)
            at_least = 1

    def delete_vectors(self, user: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        keys = [f"{user}:{i}" for i in ids]
        self.col(TEXT_COLLECTION).delete(ids=keys)
        if self.settings.image_embedding_model:
            self.col(IMAGE_COLLECTION).delete(ids=keys)

    def bump(self, conn: Tx, user: str) -> None:
        """Mark the user's vectors changed: search reloads its in-memory copy on the next query."""
        conn.execute(
            """INSERT INTO meta ("user", key, value) VALUES (?, 'version', '1') ON CONFLICT ("user", key) """
            "DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)",
            (user,),
        )

    def recontext(self, user: str, photo_ids: Sequence[str]) -> None:
        """Rewrite the context text (and its embedding) of photos whose names changed."""
        if not photo_ids:
            return
        ids = sorted(set(photo_ids))
        photos, regions = self.db.photos(user, ids), self.db.regions_of(user, ids)
        contexts = []
        for pid in ids:
            p = photos[pid]
            rel = p["rel"]
            taken = datetime.fromisoformat(p["taken_at"]) if p["taken_at"] else None
            place = (p["lat"], p["lon"]) if p["lat"] is not None else None
            contexts.append(context_text(rel, p["width"], taken, place, regions.get(pid, [])))
        self.write_text_vectors(user, ids, contexts)
        with self.db.transaction() as conn:
            conn.executemany(
                'UPDATE photos SET context=?, embedded=1 WHERE "user"=? AND id=?',
                [(c, user, i) for c, i in zip(contexts, ids, strict=True)],
            )
            self.bump(conn, user)
