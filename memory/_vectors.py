"""Exact nearest-reference search over one user's vectors, cached until that user's memory changes.

Recognition must not miss a known face: approximate (HNSW) search with a metadata filter did, at
10,000 references. A user's references fit in memory many times over (10,000 x 128 floats = 5 MB), so
they are read from Chroma once per change of the user's profile stamp and searched exactly with numpy.

Only committed vectors count: a write stores an entity's vectors before the entity row that lists
their photos, so a write killed in between (or still running) leaves vectors no entity lists yet.
They are dropped when the snapshot is read, which keeps recognition exactly as it was before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["VectorCache"]


@dataclass(frozen=True)
class _Snapshot:
    stamp: str
    entity_ids: list[str]
    categories: np.ndarray
    matrix: np.ndarray


class VectorCache:
    """Per (collection, user) snapshots of reference vectors, keyed by the user's profile stamp."""

    def __init__(self) -> None:
        self._snapshots: dict[tuple[str, str], _Snapshot] = {}
        self._lock = threading.Lock()

    def _snapshot(self, collection: Any, user: str, stamp: str, committed: Callable[[], set[str]] | None) -> _Snapshot:
        key = (collection.name, user)
        with self._lock:
            snap = self._snapshots.get(key)
        if snap is not None and snap.stamp == stamp:
            return snap
        keep = committed() if committed is not None else None  # before the vectors: a commit in between only adds
        got = collection.get(where={"user": user}, include=["embeddings", "metadatas"])
        metas = got["metadatas"] or []
        embeddings = got["embeddings"]
        if keep is not None:
            rows = [i for i, vector_id in enumerate(got["ids"]) if vector_id in keep]
            metas = [metas[i] for i in rows]
            embeddings = [embeddings[i] for i in rows] if embeddings is not None and len(embeddings) else []
        matrix = np.asarray(
            embeddings if embeddings is not None and len(embeddings) else np.zeros((0, 1)), dtype=np.float32
        )
        snap = _Snapshot(
            stamp,
            [m["entity_id"] for m in metas],
            np.asarray([m.get("category", "") for m in metas], dtype=object),
            matrix,
        )
        with self._lock:
            self._snapshots[key] = snap
        return snap

    def nearest(
        self,
        collection: Any,
        user: str,
        stamp: str,
        queries: list[list[float]],
        *,
        metric: str,
        threshold: float,
        category: str | None = None,
        k: int = 5,
        committed: Callable[[], set[str]] | None = None,
    ) -> list[tuple[float, int, str]]:
        """(distance, query row, entity id) for up to `k` references per query within `threshold`.

        `metric` is "l2" (Euclidean) or "cosine" (1 - cosine similarity). `committed` gives the ids of
        the vectors that committed entities list; others are left out (read once per stamp).
        """
        snap = self._snapshot(collection, user, stamp, committed)
        if not queries or snap.matrix.shape[0] == 0:
            return []
        refs, ids = snap.matrix, np.arange(snap.matrix.shape[0])
        if category is not None:
            keep = snap.categories == category
            refs, ids = refs[keep], ids[keep]
            if refs.shape[0] == 0:
                return []
        q = np.asarray(queries, dtype=np.float32)
        if metric == "l2":
            dist = np.sqrt(np.maximum(((q[:, None, :] - refs[None, :, :]) ** 2).sum(-1), 0.0))
        else:
            qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            rn = refs / np.maximum(np.linalg.norm(refs, axis=1, keepdims=True), 1e-12)
            dist = 1.0 - qn @ rn.T
        pairs: list[tuple[float, int, str]] = []
        top = min(k, dist.shape[1])
        for row in range(dist.shape[0]):
            best = np.argpartition(dist[row], top - 1)[:top]
            pairs.extend(
                (float(dist[row, j]), row, snap.entity_ids[int(ids[j])]) for j in best if dist[row, j] <= threshold
            )
        return pairs
