"""Grouping faces nobody has named yet: greedy nearest-face clustering, incremental as photos arrive.

A new face joins the cluster of its nearest unnamed face when that face is within the threshold
(dlib descriptors: the same person is usually < 0.5 apart, different people > 0.6), otherwise it
starts a cluster. Single-link and order-dependent by design: cheap per photo, and mistakes are what
`rcmu merge-clusters` and `rcmu split` are for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rcmu_agent.memory.library._db import LibraryDB, Tx

__all__ = ["ClusterIndex"]


class ClusterIndex:
    """The descriptors of one user's unnamed, clustered faces, with their cluster ids, in memory."""

    def __init__(self, user: str, threshold: float) -> None:
        self.user = user
        self.threshold = threshold
        self._vectors: list[np.ndarray] = []
        self._clusters: list[int] = []
        self._matrix: np.ndarray | None = None
        self._pending: list[tuple[np.ndarray, int]] = []

    @classmethod
    def load(cls, db: LibraryDB, user: str, threshold: float) -> ClusterIndex:
        index = cls(user, threshold)
        for r in db.rows(
            'SELECT descriptor, cluster_id FROM regions WHERE "user"=? AND cluster_id IS NOT NULL '
            "AND named_by IS NULL AND entity_id IS NULL AND descriptor IS NOT NULL",
            (user,),
        ):
            index._vectors.append(np.frombuffer(r["descriptor"], dtype=np.float32))
            index._clusters.append(int(r["cluster_id"]))
        return index

    def nearest(self, descriptor: Sequence[float] | np.ndarray) -> int | None:
        """The cluster of the nearest unnamed face within the threshold, if any."""
        if not self._vectors:
            return None
        if self._matrix is None or self._matrix.shape[0] != len(self._vectors):
            self._matrix = np.stack(self._vectors)
        dist = np.linalg.norm(self._matrix - np.asarray(descriptor, dtype=np.float32)[None, :], axis=1)
        best = int(np.argmin(dist))
        return self._clusters[best] if float(dist[best]) <= self.threshold else None

    def assign(self, conn: Tx, descriptors: Sequence[Sequence[float]] | Sequence[np.ndarray]) -> list[int]:
        """Cluster ids for new faces (creating clusters inside the caller's transaction).

        Call `commit` with the result once that transaction has committed, so a rolled-back photo
        leaves no trace in memory either.
        """
        pending: list[tuple[np.ndarray, int]] = []
        out: list[int] = []
        for descriptor in descriptors:
            vector = np.asarray(descriptor, dtype=np.float32)
            cluster = self.nearest(vector)
            if cluster is None:
                near_new = [c for v, c in pending if float(np.linalg.norm(v - vector)) <= self.threshold]
                cluster = near_new[0] if near_new else None
            if cluster is None:
                cluster = LibraryDB.new_cluster(conn, self.user)
            pending.append((vector, cluster))
            out.append(cluster)
        self._pending = pending
        return out

    def commit(self) -> None:
        for vector, cluster in self._pending:
            self._vectors.append(vector)
            self._clusters.append(cluster)
        self._pending = []
