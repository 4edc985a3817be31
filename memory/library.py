"""The photo library: `rcmu index DIR` and what searching and asking over it need.

Per user, each photo (one per distinct content, however many paths hold it) keeps its EXIF time and
place, its faces (dlib boxes and descriptors) and objects, who was recognised, a one-line region
context with a MiniLM embedding, and a CLIP image embedding when a CLIP model is configured. The
sidecar (SQLite) says what is indexed; Chroma holds the vectors.

Incremental: a path whose size and mtime are unchanged is not even read; new content is hashed, and a
known hash at a new path is a move (old path gone) or a duplicate (old path still there) — never
decoded again. Resumable: every photo is its own commit, so a killed run keeps what it finished.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import InvalidInputError, NotFoundError, RcmuError
from rcmu_agent.memory._clusters import ClusterIndex
from rcmu_agent.memory._exif import read_exif
from rcmu_agent.memory._library_base import IMAGE_COLLECTION, PENDING, context_text
from rcmu_agent.memory._library_db import encode_vector
from rcmu_agent.memory._library_edit import ClusterEdits
from rcmu_agent.memory._library_models import (
    Cluster,
    IndexReport,
    LibraryAnswer,
    PhotoCitation,
    PhotoHit,
    Place,
    SkippedFile,
)
from rcmu_agent.memory._library_search import LibrarySearch
from rcmu_agent.memory._library_walk import walk_library
from rcmu_agent.memory._records import check_user, name_key

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.parts import Parts
    from rcmu_agent.schema import Region

__all__ = [
    "Cluster",
    "IndexReport",
    "LibraryAnswer",
    "PhotoCitation",
    "PhotoHit",
    "PhotoLibrary",
    "Place",
    "SkippedFile",
]

log = logging.getLogger(__name__)


class PhotoLibrary(LibrarySearch, ClusterEdits):
    """Index, search and face clusters of every user's photos under one `RCMU_HOME`."""

    def __init__(self, parts: Parts) -> None:
        super().__init__(parts)
        self.decodes = 0  # photos decoded by this instance: re-indexing must not add to it

    def index(self, root: Path | str, *, user: str, progress: Callable[[int, int], None] | None = None) -> IndexReport:
        """Bring the user's index of `root` up to date; see the module docstring for what is recomputed."""
        check_user(user)
        folder = Path(str(root)).expanduser()
        if not folder.is_dir():
            raise NotFoundError(f"library folder {folder} does not exist", "give the folder that holds your photos")
        root_key = str(folder.resolve())
        started = time.perf_counter()
        report = IndexReport(root=root_key, user=user)
        with self._lock():
            self._orphans: list[str] = []
            self._refresh_names(user)
            self._embed_pending(user)  # left by a killed run
            files: list[Path] = []
            for path, reason in walk_library(folder):
                if reason is None:
                    files.append(path)
                else:
                    report.skipped.append(SkippedFile(path=str(path), reason=reason))
            known, bad = self.db.paths_under(user, root_key), self.db.bad_under(user, root_key)
            clusters = ClusterIndex.load(self.db, user, self.settings.library_cluster_threshold)
            seen: set[str] = set()
            for done, path in enumerate(files, start=1):
                rel = path.relative_to(folder).as_posix()
                seen.add(rel)
                try:
                    self._index_file(user, root_key, rel, path, known.get(rel), bad.get(rel), report, clusters)
                except (RcmuError, OSError) as exc:
                    reason = exc.problem if isinstance(exc, RcmuError) else f"unreadable ({exc.strerror or exc})"
                    report.skipped.append(SkippedFile(path=str(path), reason=reason))
                    self._remember_bad(user, root_key, rel, path, reason, known.get(rel))
                self._embed_pending(user, at_least=PENDING)
                if progress is not None:
                    progress(done, len(files))
            self._embed_pending(user)
            report.removed = self._remove_missing(user, root_key, seen)
        report.photos = self.db.count_photos(user)
        report.seconds = round(time.perf_counter() - started, 3)
        log.info("indexed %s for %s: %s", root_key, user, report.model_dump(exclude={"skipped"}))
        return report

    # ---- one file --------------------------------------------------------------------------------
    def _index_file(
        self,
        user: str,
        root: str,
        rel: str,
        path: Path,
        old: Any,
        bad: Any,
        report: IndexReport,
        clusters: ClusterIndex,
    ) -> None:
        stat = path.stat()
        if old is not None and (old["size"], old["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            report.unchanged += 1
            return
        if bad is not None and (bad["size"], bad["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            report.skipped.append(SkippedFile(path=str(path), reason=bad["reason"]))
            return
        if stat.st_size > self.settings.max_image_bytes:
            raise InvalidInputError(
                f"{path} is {stat.st_size / 2**20:.1f} MiB, over the {self.settings.max_image_bytes / 2**20:.0f} MiB"
                " limit",
                "raise RCMU_MAX_IMAGE_BYTES to index it",
            )
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        photo_id = digest[:24]
        path_row = (user, root, rel, photo_id, stat.st_size, stat.st_mtime_ns)
        if self.db.has_photo(user, photo_id):
            self._known_content(user, root, rel, old, path_row, report)
            return
        computed = self._compute(user, rel, data, photo_id)
        self._commit_new(user, root, rel, old, path_row, digest, computed, clusters)
        report.added += 1
        report.faces += sum(1 for r in computed["regions"] if r.category == "person")

    def _known_content(
        self, user: str, root: str, rel: str, old: Any, path_row: tuple[Any, ...], report: IndexReport
    ) -> None:
        """Content already indexed: a touched file, a move or a duplicate. Nothing is decoded."""
        photo_id = path_row[3]
        with self.db.transaction() as conn:
            if old is not None and old["photo_id"] == photo_id:  # same bytes, new mtime (touched, copied back)
                report.unchanged += 1
            else:
                if old is not None:
                    self._drop_path(conn, user, root, rel, old["photo_id"])
                others = conn.execute(
                    "SELECT root, rel FROM paths WHERE user=? AND photo_id=?", (user, photo_id)
                ).fetchall()
                gone = [o for o in others if not (Path(o["root"]) / o["rel"]).exists()]
                if gone:
                    conn.execute(
                        "DELETE FROM paths WHERE user=? AND root=? AND rel=?", (user, gone[0]["root"], gone[0]["rel"])
                    )
                    report.moved += 1
                else:
                    report.duplicates += 1
            conn.execute("INSERT OR REPLACE INTO paths VALUES (?, ?, ?, ?, ?, ?)", path_row)
            conn.execute("DELETE FROM bad_files WHERE user=? AND root=? AND rel=?", (user, root, rel))

    def _compute(self, user: str, rel: str, data: bytes, photo_id: str) -> dict[str, Any]:
        """Everything derived from the pixels: decode, faces, objects, recognition, embeddings."""
        from rcmu_agent.images import load_image

        parts, settings = self.parts, self.settings
        try:
            image = load_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        except InvalidInputError as exc:  # decoded from bytes: put the file's name where it says "image bytes"
            raise InvalidInputError(exc.problem.replace("image bytes", rel, 1), exc.fix) from exc
        self.decodes += 1
        taken_at, place = read_exif(data)
        faces = parts.face_encoder.encode(image, parts.face_detector.detect(image))
        face_matches = parts.memory.match_faces(user, [f.descriptor or [] for f in faces], settings.face_threshold)
        objects, object_matches = self._objects(user, image)
        regions = faces + objects
        named = [(m.entity.id, m.entity.name, m.distance) if m else None for m in face_matches + object_matches]
        rows = [
            {
                "x1": r.box[0],
                "y1": r.box[1],
                "x2": r.box[2],
                "y2": r.box[3],
                "category": r.category,
                "name": n[1] if n else None,
            }
            for r, n in zip(regions, named, strict=True)
        ]
        context = context_text(rel, image.width, taken_at, place, rows)
        image_vector = None
        if parts.image_embedder is not None:
            image_vector = parts.image_embedder.embed([image])[0].tolist()
        return {
            "image": image,
            "taken_at": taken_at,
            "place": place,
            "regions": regions,
            "named": named,
            "context": context,
            "image_vector": image_vector,
        }

    def _objects(self, user: str, image: Image.Image) -> tuple[list[Region], list[Any]]:
        """Objects of the categories the user taught, when an object detector is configured."""
        parts = self.parts
        categories = [c for c in parts.memory.categories(user) if c != "person"]
        if parts.object_detector is None or not categories:
            return [], []
        found = parts.object_detector.detect(image, categories)
        if not found or parts.image_embedder is None:
            return found, [None] * len(found)
        vectors = parts.image_embedder.embed([parts.image_embedder.crop(image, r.box) for r in found])
        found = [r.model_copy(update={"descriptor": v.tolist()}) for r, v in zip(found, vectors, strict=True)]
        matches = parts.memory.match_objects(
            user, [r.descriptor or [] for r in found], [r.category for r in found], self.settings.object_threshold
        )
        return found, list(matches)

    def _commit_new(
        self,
        user: str,
        root: str,
        rel: str,
        old: Any,
        path_row: tuple[Any, ...],
        digest: str,
        c: dict[str, Any],
        clusters: ClusterIndex,
    ) -> None:
        """Image vector first, then the photo's rows in one transaction; text vectors follow in batches."""
        photo_id, image = path_row[3], c["image"]
        given = c.get("text_vectors")  # imports and benchmarks bring their own
        if given is not None:
            self._write_text_vectors(user, [photo_id], [c["context"]], given)
        if c["image_vector"] is not None:
            self._col(IMAGE_COLLECTION).upsert(
                ids=[f"{user}:{photo_id}"],
                embeddings=[c["image_vector"]],
                metadatas=[{"user": user, "photo_id": photo_id}],
            )
        regions, named = c["regions"], c["named"]
        unknown = [
            i for i, (r, n) in enumerate(zip(regions, named, strict=True)) if n is None and r.category == "person"
        ]
        with self.db.transaction() as conn:
            if old is not None:
                self._drop_path(conn, user, root, rel, old["photo_id"])
            taken, place = c["taken_at"], c["place"]
            conn.execute(
                "INSERT OR REPLACE INTO photos (user, id, sha256, width, height, bytes, taken_at, lat, lon, rel, "
                "context, embedded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (user, photo_id, digest, image.width, image.height, path_row[4],
                 taken.isoformat() if taken else None, place[0] if place else None, place[1] if place else None,
                 rel, c["context"], given is not None),
            )  # fmt: skip
            conn.execute("INSERT OR REPLACE INTO paths VALUES (?, ?, ?, ?, ?, ?)", path_row)
            conn.execute("DELETE FROM bad_files WHERE user=? AND root=? AND rel=?", (user, root, rel))
            cluster_ids = dict(
                zip(unknown, clusters.assign(conn, [regions[i].descriptor for i in unknown]), strict=True)
            )
            for i, (r, n) in enumerate(zip(regions, named, strict=True)):
                conn.execute(
                    "INSERT INTO regions (user, photo_id, x1, y1, x2, y2, category, score, source, descriptor, "
                    "entity_id, name, name_key, distance, named_by, cluster_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (user, photo_id, *r.box, r.category, r.score, r.source,
                     encode_vector(r.descriptor if r.category == "person" else None),
                     n[0] if n else None, n[1] if n else None, name_key(n[1]) if n else None, n[2] if n else None,
                     "memory" if n else None, cluster_ids.get(i)),
                )  # fmt: skip
            self._bump(conn, user)
        clusters.commit()

    # ---- paths that went away --------------------------------------------------------------------
    def _drop_path(self, conn: Any, user: str, root: str, rel: str, photo_id: str) -> None:
        """Forget one path; the photo goes with its last path (its vectors after the commit)."""
        conn.execute("DELETE FROM paths WHERE user=? AND root=? AND rel=?", (user, root, rel))
        left = conn.execute("SELECT 1 FROM paths WHERE user=? AND photo_id=? LIMIT 1", (user, photo_id)).fetchone()
        if left is None:
            self.db.delete_photo(conn, user, photo_id)
            self._orphans.append(photo_id)

    def _remove_missing(self, user: str, root: str, seen: set[str]) -> int:
        gone = [rel for rel in self.db.paths_under(user, root) if rel not in seen]
        with self.db.transaction() as conn:
            for rel in gone:
                row = conn.execute(
                    "SELECT photo_id FROM paths WHERE user=? AND root=? AND rel=?", (user, root, rel)
                ).fetchone()
                if row is not None:
                    self._drop_path(conn, user, root, rel, row["photo_id"])
            conn.execute(
                "DELETE FROM bad_files WHERE user=? AND root=? AND rel NOT IN (SELECT value FROM json_each(?))",
                (user, root, _json_list(seen)),
            )
            if gone:
                self._bump(conn, user)
        self._delete_vectors(user, self._orphans)
        conn_rows = self.db.rows("SELECT id FROM clusters WHERE user=? AND id NOT IN "
                                 "(SELECT DISTINCT cluster_id FROM regions WHERE user=? AND cluster_id IS NOT NULL)",
                                 (user, user))  # fmt: skip
        if conn_rows:
            self.db.execute(f"DELETE FROM clusters WHERE id IN ({','.join(str(int(r['id'])) for r in conn_rows)})")
        return len(gone)

    def _remember_bad(self, user: str, root: str, rel: str, path: Path, reason: str, old: Any) -> None:
        """A file that failed is not read again until it changes (its size or mtime); a photo that
        became unreadable at this path loses the path."""
        if old is not None:
            with self.db.transaction() as conn:
                self._drop_path(conn, user, root, rel, old["photo_id"])
                self._bump(conn, user)
        try:
            stat = path.stat()
        except OSError:
            return
        self.db.execute(
            "INSERT OR REPLACE INTO bad_files VALUES (?, ?, ?, ?, ?, ?)",
            (user, root, rel, stat.st_size, stat.st_mtime_ns, reason),
        )


def _json_list(items: set[str]) -> str:
    import json

    return json.dumps(sorted(items))
