"""Keeping the names in the photo library in step with the personal memory.

Teaching, forgetting or naming a cluster changes who the stored faces are. Descriptors are kept in
the sidecar, so catching up re-runs recognition on them — never on the photos — and only when the
memory's stamp differs from the one the library last caught up with.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from rcmu_agent.errors import MemoryLockedError
from rcmu_agent.memory._records import name_key
from rcmu_agent.memory.library._cluster_index import ClusterIndex
from rcmu_agent.memory.library._db import Row
from rcmu_agent.memory.library._store import LibraryStore
from rcmu_agent.recognizer import Recognizer
from rcmu_agent.schema import Region

__all__ = ["LibraryNames"]

log = logging.getLogger(__name__)


class LibraryNames:
    """Re-recognition of stored faces after the memory changed."""

    def __init__(self, store: LibraryStore, recognizer: Recognizer) -> None:
        self.store, self.recognizer = store, recognizer

    def _stamp(self, user: str) -> str:
        memory = self.recognizer.memory
        return memory.stamp(user) if memory is not None else ""

    def stale(self, user: str) -> bool:
        return self.store.db.get_meta(user, "memory_stamp") != self._stamp(user)

    def refresh(self, user: str) -> None:
        """Re-recognise faces the memory named (or did not) when the memory changed since the last run.

        Faces the user named (or split out) keep their user-given name: a name the user gave always
        wins over a guess. The caller holds the library lock.
        """
        stamp = self._stamp(user)
        db = self.store.db
        if db.get_meta(user, "memory_stamp") == stamp:
            return
        rows = db.rows(
            """SELECT * FROM regions WHERE "user"=? AND category='person' AND descriptor IS NOT NULL """
            "AND (named_by IS NULL OR named_by='memory') ORDER BY photo_id, id",
            (user,),
        )
        by_photo: dict[str, list[Row]] = {}
        for r in rows:
            by_photo.setdefault(r["photo_id"], []).append(r)
        updates: list[tuple[Any, ...]] = []
        unmatched: list[Row] = []
        changed: set[str] = set()
        for photo_id, faces in by_photo.items():  # per photo: one face per person, as when indexed
            entries = self.recognizer.match(user, [_face(f) for f in faces])
            for face, entry in zip(faces, entries, strict=True):
                if entry.entity_id is None:
                    if face["entity_id"] is not None or face["cluster_id"] is None:
                        unmatched.append(face)
                        changed.add(photo_id)
                elif entry.entity_id != face["entity_id"] or entry.name != face["name"]:
                    updates.append(
                        (entry.entity_id, entry.name, name_key(entry.name or ""), entry.distance, face["id"])
                    )
                    changed.add(photo_id)
        self._write(user, updates, unmatched, stamp)
        if changed:
            log.info("names changed in %d photo(s) after the memory changed", len(changed))
            self.store.recontext(user, sorted(changed))

    def _write(self, user: str, updates: list[tuple[Any, ...]], unmatched: list[Row], stamp: str) -> None:
        db = self.store.db
        clusters = ClusterIndex.load(db, user, self.store.settings.library_cluster_threshold)
        with db.transaction() as conn:
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
            db.set_meta(conn, user, "memory_stamp", stamp)
        clusters.commit()

    def refresh_if_free(self, user: str) -> None:
        """Pick up names taught since the last index (and text vectors a killed index left pending),
        unless an index is running: it does both itself."""
        pending = bool(self.store.db.rows('SELECT 1 FROM photos WHERE "user"=? AND embedded=0 LIMIT 1', (user,)))
        if not pending and not self.stale(user):
            return
        try:
            with self.store.lock(timeout=0):
                self.refresh(user)
                self.store.embed_pending(user)
        except MemoryLockedError:
            log.info("an index is running; names taught since it started show once it ends")


def _face(row: Row) -> Region:
    """A stored face as recognition sees it: its box and its descriptor."""
    return Region(
        box=(row["x1"], row["y1"], row["x2"], row["y2"]),
        category="person",
        source="face",
        descriptor=np.frombuffer(row["descriptor"], dtype=np.float32).tolist(),
    )
