"""Face clusters the user works with: list (with sample crops), name, merge, split.

Naming a cluster remembers the person in the personal memory, with the cluster's largest faces as
reference photos (crops, with their descriptors): search by that name works at once, and any later
photo — or any other face already indexed — that matches them is recognised like any taught person.
The faces of the cluster itself are marked as named by the user, so no automatic match overrides them.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.files import atomic_write
from rcmu_agent.images import PhotoCache
from rcmu_agent.memory._records import ReferencePhoto, name_key
from rcmu_agent.memory.library._names import LibraryNames
from rcmu_agent.memory.library._store import LibraryStore
from rcmu_agent.memory.store import MemoryStore
from rcmu_agent.prompt import clean_text
from rcmu_agent.schema import Cluster
from rcmu_agent.users import check_user

__all__ = ["FaceClusters"]

log = logging.getLogger(__name__)
MAX_REFERENCES = 6  # faces of a named cluster copied into the memory as reference photos
SAMPLES = 3  # sample crops per cluster in `rcmu people`
CROP_MARGIN = 0.25


class FaceClusters:
    """The user's face clusters: listed with crops, named (remembering the person), merged, split."""

    def __init__(self, store: LibraryStore, names: LibraryNames, memory: MemoryStore, photos: PhotoCache) -> None:
        self.store, self.names, self.memory, self.photos = store, names, memory, photos
        self.db = store.db

    def of(self, user: str, *, include_named: bool = False, crops: bool = True) -> list[Cluster]:
        """Clusters, largest first; unnamed ones only unless `include_named`."""
        check_user(user)
        rows = self.db.rows(
            "SELECT r.*, r.x2 - r.x1 AS w, c.name AS cluster_name FROM regions r "
            'JOIN clusters c ON c.id = r.cluster_id WHERE r."user"=? ORDER BY r.id',
            (user,),
        )
        grouped: dict[int, list[Any]] = {}
        for r in rows:
            if include_named or r["cluster_name"] is None:
                grouped.setdefault(int(r["cluster_id"]), []).append(r)
        paths = self.db.paths_of(user, sorted({r["photo_id"] for r in rows}))
        out = []
        for cluster_id, faces in sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            samples = sorted(faces, key=lambda r: -r["w"])[:SAMPLES]
            out.append(
                Cluster(
                    id=cluster_id,
                    size=len(faces),
                    name=faces[0]["cluster_name"],
                    faces=[int(r["id"]) for r in faces],
                    sample_paths=[paths[r["photo_id"]][0] for r in samples if paths.get(r["photo_id"])],
                    crops=[str(p) for p in self._crops(user, samples)] if crops else [],
                )
            )
        return out

    def _faces(self, user: str, cluster_id: int) -> list[Any]:
        faces = self.db.rows(
            'SELECT * FROM regions WHERE "user"=? AND cluster_id=? ORDER BY id', (user, int(cluster_id))
        )
        if not faces:
            raise NotFoundError(f"there is no face cluster {cluster_id} for user {user!r}", "see `rcmu people`")
        return faces

    def _crop_bytes(self, user: str, face: Any) -> bytes | None:
        """The face with a margin, as JPEG, from the first copy of its photo that still loads."""
        from rcmu_agent.errors import RcmuError

        for path in self.db.paths_of(user, [face["photo_id"]]).get(face["photo_id"], []):
            try:
                image = self.photos.load(path)
            except RcmuError:
                continue
            x1, y1, x2, y2 = face["x1"], face["y1"], face["x2"], face["y2"]
            mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
            box = (
                max(0, int(x1 - mx)),
                max(0, int(y1 - my)),
                min(image.width, int(x2 + mx)),
                min(image.height, int(y2 + my)),
            )
            buffer = io.BytesIO()
            image.crop(box).save(buffer, format="JPEG", quality=90)
            return buffer.getvalue()
        return None

    def _crops(self, user: str, faces: Sequence[Any]) -> list[Path]:
        out = []
        for face in faces:
            target = self.store.crop_path(user, face)
            if not target.exists():
                data = self._crop_bytes(user, face)
                if data is None:
                    continue
                atomic_write(target, data)
            out.append(target)
        return out

    # ---- naming ----------------------------------------------------------------------------------
    def name(self, user: str, cluster_id: int, name: str, *, info: str | None = None) -> Cluster:
        """Name every face in the cluster and remember the person (see the module docstring)."""
        check_user(user)
        name = clean_text(name, "name", max_chars=100)
        memory = self.memory
        with self.store.lock():
            faces = self._faces(user, cluster_id)
            try:
                existing = memory.get(user, name)
            except NotFoundError:
                existing = None
            if existing is not None and existing.category != "person":
                raise InvalidInputError(f"{name!r} is remembered as a {existing.category}", "choose another name")
            known_info = existing.info if existing is not None else f"{name}, named in the photo library"
            references = []
            for face in sorted(faces, key=lambda f: -(f["x2"] - f["x1"]))[:MAX_REFERENCES]:
                data = self._crop_bytes(user, face)
                if data is not None and face["descriptor"] is not None:
                    vector = np.frombuffer(face["descriptor"], dtype=np.float32).astype(float).tolist()
                    references.append(ReferencePhoto(data, ".jpg", face_descriptor=vector))
            entity = memory.remember(user, name, info or known_info, "person", references)
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE regions SET entity_id=?, name=?, name_key=?, distance=NULL, named_by='user' "
                    'WHERE "user"=? AND cluster_id=?',
                    (entity.id, entity.name, name_key(entity.name), user, int(cluster_id)),
                )
                conn.execute(
                    'UPDATE clusters SET name=?, entity_id=? WHERE "user"=? AND id=?',
                    (entity.name, entity.id, user, int(cluster_id)),
                )
            self.store.recontext(user, sorted({f["photo_id"] for f in faces}))
            self.names.refresh(user)  # other faces that match the new references get the name too
        log.info("named cluster %s %s (%d faces)", cluster_id, entity.name, len(faces))
        return self._cluster(user, int(cluster_id))

    def merge(self, user: str, cluster_ids: Sequence[int]) -> Cluster:
        """One cluster from several (the first keeps its id). A named cluster passes its name on."""
        check_user(user)
        ids = list(dict.fromkeys(int(c) for c in cluster_ids))
        if len(ids) < 2:
            raise InvalidInputError("merging needs at least two clusters", "e.g. `rcmu merge-clusters 3 7`")
        with self.store.lock():
            faces = {c: self._faces(user, c) for c in ids}
            names = {f["name"] for c in ids for f in faces[c] if f["named_by"] == "user" and f["name"]}
            if len(names) > 1:
                raise InvalidInputError(
                    f"the clusters are named differently ({', '.join(sorted(names))})",
                    "split out the wrong faces instead, or merge only clusters of one person",
                )
            target = ids[0]
            with self.db.transaction() as conn:
                marks = ",".join("?" * (len(ids) - 1))
                conn.execute(
                    f'UPDATE regions SET cluster_id=? WHERE "user"=? AND cluster_id IN ({marks})',
                    (target, user, *ids[1:]),
                )
                conn.execute(f'DELETE FROM clusters WHERE "user"=? AND id IN ({marks})', (user, *ids[1:]))
        if names:
            return self.name(user, target, names.pop())
        return self._cluster(user, target)

    def split(self, user: str, cluster_id: int, face_ids: Sequence[int]) -> Cluster:
        """Move `face_ids` into a new cluster. Out of a named cluster, they lose its name for good
        (the user said they are someone else); an automatic match will not give it back."""
        check_user(user)
        moving = sorted({int(f) for f in face_ids})
        if not moving:
            raise InvalidInputError("no face ids given", "see the face ids with `rcmu people --json`")
        with self.store.lock():
            faces = {int(f["id"]): f for f in self._faces(user, cluster_id)}
            stray = [f for f in moving if f not in faces]
            if stray:
                raise InvalidInputError(f"face(s) {stray} are not in cluster {cluster_id}", "see `rcmu people --json`")
            if len(moving) == len(faces):
                raise InvalidInputError("that would move every face", "leave at least one face in the cluster")
            named = any(faces[f]["named_by"] == "user" for f in moving)
            with self.db.transaction() as conn:
                new_id = self.db.new_cluster(conn, user)
                marks = ",".join("?" * len(moving))
                update = ", entity_id=NULL, name=NULL, name_key=NULL, named_by='user'" if named else ""
                conn.execute(
                    f'UPDATE regions SET cluster_id=?{update} WHERE "user"=? AND id IN ({marks})',
                    (new_id, user, *moving),
                )
            self.store.recontext(user, sorted({faces[f]["photo_id"] for f in moving}))
        return self._cluster(user, new_id)

    def _cluster(self, user: str, cluster_id: int) -> Cluster:
        found = [c for c in self.of(user, include_named=True, crops=False) if c.id == cluster_id]
        if not found:
            raise NotFoundError(f"there is no face cluster {cluster_id} for user {user!r}", "see `rcmu people`")
        return found[0]
