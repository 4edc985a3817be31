"""What every part of the photo library shares: the sidecar, the Chroma collections, the index lock,
the photo's context text, and keeping recognised names in step with the personal memory."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from rcmu_agent.errors import MemoryLockedError
from rcmu_agent.memory._client import collection, open_client
from rcmu_agent.memory._clusters import ClusterIndex
from rcmu_agent.memory._library_db import LibraryDB
from rcmu_agent.memory._records import name_key
from rcmu_agent.memory.text_embedder import TextEmbedder

if TYPE_CHECKING:
    from rcmu_agent.parts import Parts

__all__ = ["LibraryBase", "context_text", "position"]

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


class LibraryBase:
    """State and helpers; `PhotoLibrary` adds indexing, search and clusters on top."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.dir = self.settings.home / "library"
        self._db: LibraryDB | None = None
        self._client: Any = None
        self._cols: dict[str, Any] = {}
        self._text = TextEmbedder()

    @property
    def db(self) -> LibraryDB:
        if self._db is None:
            self._db = LibraryDB(self.dir / "library.sqlite")
        return self._db

    def _col(self, name: str) -> Any:
        if name not in self._cols:
            if self._client is None:
                self._client = open_client(self.settings.home, self.settings.chroma_url)
            model = self._text.model_name if name == TEXT_COLLECTION else self.settings.image_embedding_model or "none"
            self._cols[name] = collection(self._client, name, model, "cosine")
        return self._cols[name]

    @contextlib.contextmanager
    def _lock(self, timeout: float | None = None) -> Iterator[None]:
        """One indexer (or cluster edit) per home; a second waits `lock_timeout`, then is told who runs."""
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(
            str(self.dir / "index.lock"), timeout=self.settings.lock_timeout if timeout is None else timeout
        )
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

    # ---- vectors ---------------------------------------------------------------------------------
    def _write_text_vectors(self, user: str, ids: Sequence[str], contexts: Sequence[str], vectors: Any = None) -> None:
        """Upsert the MiniLM vectors of `contexts` (or the given `vectors`: imports, benchmarks)."""
        if ids:
            self._col(TEXT_COLLECTION).upsert(
                ids=[f"{user}:{i}" for i in ids],
                embeddings=self._text.embed(contexts) if vectors is None else vectors,
                metadatas=[{"user": user, "photo_id": i} for i in ids],
                documents=list(contexts),
            )

    def _embed_pending(self, user: str, *, at_least: int = 1) -> int:
        """Write the text vectors of photos committed without them, in batches (one MiniLM call and one
        Chroma upsert per batch: per photo, the model call would cost more than the photo's rows)."""
        done = 0
        while True:
            rows = self.db.rows(
                "SELECT id, context FROM photos WHERE user=? AND embedded=0 LIMIT ?", (user, max(at_least, PENDING))
            )
            if len(rows) < at_least or not rows:
                return done
            ids = [r["id"] for r in rows]
            self._write_text_vectors(user, ids, [r["context"] for r in rows])
            with self.db.transaction() as conn:
                marks = ",".join("?" * len(ids))
                conn.execute(f"UPDATE photos SET embedded=1 WHERE user=? AND id IN ({marks})", (user, *ids))
                self._bump(conn, user)
            done += len(ids)
            at_least = 1

    def _delete_vectors(self, user: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        keys = [f"{user}:{i}" for i in ids]
        self._col(TEXT_COLLECTION).delete(ids=keys)
        if self.settings.image_embedding_model:
            self._col(IMAGE_COLLECTION).delete(ids=keys)

    def _bump(self, conn: sqlite3.Connection, user: str) -> None:
        """Mark the user's vectors changed: search reloads its in-memory copy on the next query."""
        conn.execute(
            "INSERT INTO meta (user, key, value) VALUES (?, 'version', '1') ON CONFLICT (user, key) "
            "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            (user,),
        )

    def _recontext(self, user: str, photo_ids: Sequence[str]) -> None:
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
        self._write_text_vectors(user, ids, contexts)
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE photos SET context=?, embedded=1 WHERE user=? AND id=?",
                [(c, user, i) for c, i in zip(contexts, ids, strict=True)],
            )
            self._bump(conn, user)

    # ---- names -----------------------------------------------------------------------------------
    def _memory_stamp(self, user: str) -> str:
        profile = self.parts.memory._profile(user)
        return str(profile.get("stamp", "")) if profile else ""

    def _refresh_names(self, user: str) -> None:
        """Re-recognise faces the memory named (or did not) when the memory changed since the last run.

        Descriptors are stored, so no photo is decoded. Faces the user named (or split out) keep their
        user-given name: a name the user gave always wins over a guess.
        """
        stamp = self._memory_stamp(user)
        if self.db.get_meta(user, "memory_stamp") == stamp:
            return
        rows = self.db.rows(
            "SELECT * FROM regions WHERE user=? AND category='person' AND descriptor IS NOT NULL "
            "AND (named_by IS NULL OR named_by='memory') ORDER BY photo_id, id",
            (user,),
        )
        by_photo: dict[str, list[sqlite3.Row]] = {}
        for r in rows:
            by_photo.setdefault(r["photo_id"], []).append(r)
        updates: list[tuple[Any, ...]] = []
        unmatched: list[sqlite3.Row] = []
        changed: set[str] = set()
        for photo_id, faces in by_photo.items():
            vectors = [np.frombuffer(f["descriptor"], dtype=np.float32).tolist() for f in faces]
            matches = self.parts.memory.match_faces(user, vectors, self.settings.face_threshold)
            for face, match in zip(faces, matches, strict=True):
                if match is None:
                    if face["entity_id"] is not None or face["cluster_id"] is None:
                        unmatched.append(face)
                        changed.add(photo_id)
                elif match.entity.id != face["entity_id"] or match.entity.name != face["name"]:
                    e = match.entity
                    updates.append((e.id, e.name, name_key(e.name), match.distance, face["id"]))
                    changed.add(photo_id)
        clusters = ClusterIndex.load(self.db, user, self.settings.library_cluster_threshold)
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE regions SET entity_id=?, name=?, name_key=?, distance=?, named_by='memory', cluster_id=NULL "
                "WHERE id=?",
                updates,
            )
            assigned = clusters.assign(conn, [np.frombuffer(f["descriptor"], dtype=np.float32) for f in unmatched])
            conn.executemany(
                "UPDATE regions SET entity_id=NULL, name=NULL, name_key=NULL, distance=NULL, named_by=NULL, "
                "cluster_id=? WHERE id=?",
                [(c, f["id"]) for c, f in zip(assigned, unmatched, strict=True)],
            )
            self.db.set_meta(conn, user, "memory_stamp", stamp)
        clusters.commit()
        if changed:
            log.info("names changed in %d photo(s) after the memory changed", len(changed))
            self._recontext(user, sorted(changed))
