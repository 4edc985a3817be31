"""Indexing the photo library (`rcmu index DIR`): what searching and asking over it need.

Per user, each photo (one per distinct content, however many paths hold it) keeps its EXIF time and
place, its faces (dlib boxes and descriptors) and objects, who was recognised, a one-line region
context with a MiniLM embedding, and a CLIP image embedding when a CLIP model is configured. The
sidecar (SQLite, or PostgreSQL when replicas share the deployment) says what is indexed; Chroma holds
the vectors.

Incremental: a path whose size and mtime are unchanged is not even read; new content is hashed, and a
known hash at a new path is a move (old path gone) or a duplicate (old path still there) — never
decoded again. Resumable: every photo is its own commit, so a killed run keeps what it finished.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcmu_agent.errors import InvalidInputError, NotFoundError, RcmuError
from rcmu_agent.memory._records import name_key
from rcmu_agent.memory.library._cluster_index import ClusterIndex
from rcmu_agent.memory.library._db import encode_vector
from rcmu_agent.memory.library._names import LibraryNames
from rcmu_agent.memory.library._store import IMAGE_COLLECTION, PENDING, LibraryStore, context_text
from rcmu_agent.memory.library._walk import walk_library
from rcmu_agent.memory.library.workers import PixelPool, Pixels, worker_count
from rcmu_agent.recognizer import Recognizer
from rcmu_agent.schema import IndexReport, SkippedFile
from rcmu_agent.users import check_user

__all__ = ["LibraryIndexer"]

log = logging.getLogger(__name__)
MIN_PHOTOS_PER_WORKER = 3  # fewer new photos than this per worker: one process is done sooner


@dataclass
class _Waiting:
    """A path whose content is new to the index, on its way through the pixel pool."""

    rel: str
    path: Path
    old: Any
    path_row: tuple[Any, ...]
    digest: str
    data: bytes = b""
    future: Future[Pixels] = field(default_factory=Future)


class LibraryIndexer:
    """Brings a user's index of a folder up to date, one committed photo at a time."""

    def __init__(self, store: LibraryStore, recognizer: Recognizer, names: LibraryNames) -> None:
        self.store, self.recognizer, self.names = store, recognizer, names
        self.settings, self.db = store.settings, store.db
        self.decodes = 0  # photos decoded by this instance: re-indexing must not add to it

    def index(
        self,
        root: Path | str,
        *,
        user: str,
        progress: Callable[[int, int], None] | None = None,
        workers: int | None = None,
    ) -> IndexReport:
        """Bring the user's index of `root` up to date; see the module docstring for what is recomputed.

        `workers` processes (default `RCMU_LIBRARY_WORKERS`, 0 = one per core) do the pixel work; this
        process commits each photo, in walk order, as it did alone.
        """
        check_user(user)
        folder = Path(str(root)).expanduser()
        if not folder.is_dir():
            raise NotFoundError(f"library folder {folder} does not exist", "give the folder that holds your photos")
        root_key = str(folder.resolve())
        started = time.perf_counter()
        report = IndexReport(root=root_key, user=user)
        with self.store.lock():
            self._orphans: list[str] = []
            self.names.refresh(user)
            self.store.embed_pending(user)  # left by a killed run
            files: list[Path] = []
            for path, reason in walk_library(folder):
                if reason is None:
                    files.append(path)
                else:
                    report.skipped.append(SkippedFile(path=str(path), reason=reason))
            count = worker_count(self.settings.library_workers if workers is None else workers)
            seen = self._index_files(user, root_key, folder, files, report, progress, count)
            self.store.embed_pending(user)
            report.removed = self._remove_missing(user, root_key, seen)
        report.photos = self.db.count_photos(user)
        report.seconds = round(time.perf_counter() - started, 3)
        log.info("indexed %s for %s: %s", root_key, user, report.model_dump(exclude={"skipped"}))
        return report

    def _index_files(
        self,
        user: str,
        root: str,
        folder: Path,
        files: list[Path],
        report: IndexReport,
        progress: Callable[[int, int], None] | None,
        workers: int,
    ) -> set[str]:
        """Walk order in, walk order out: new content goes to the pool, and photos are committed in the
        order they were submitted, with at most two per worker waiting (none when working alone)."""
        known, bad = self.db.paths_under(user, root), self.db.bad_under(user, root)
        clusters = ClusterIndex.load(self.db, user, self.settings.library_cluster_threshold)
        categories = self.recognizer.object_categories(user)
        changed = sum(1 for p in files if _changed(p, known.get(_rel(p, folder)), bad.get(_rel(p, folder))))
        # starting workers costs seconds (a fresh interpreter, dlib and CLIP loaded in each): only for enough work
        pool = PixelPool(self.recognizer, workers if changed >= MIN_PHOTOS_PER_WORKER * workers else 1)
        waiting: deque[_Waiting] = deque()
        seen: set[str] = set()
        done = 0

        def finished() -> None:
            nonlocal done
            done += 1
            self.store.embed_pending(user, at_least=PENDING)
            if progress is not None:
                progress(done, len(files))

        def land() -> None:
            item = waiting.popleft()
            try:
                pixels = item.future.result()
                self.decodes += 1
                self._commit_pixels(user, root, item, pixels, clusters, report)
            except (RcmuError, OSError) as exc:
                self._skip(user, root, item.rel, item.path, exc, item.old, report)
            finished()

        try:
            for path in files:
                rel = _rel(path, folder)
                seen.add(rel)
                try:
                    item = self._triage(user, root, rel, path, known.get(rel), bad.get(rel), report)
                    while item is not None and any(w.digest == item.digest for w in waiting):
                        land()  # the same content is on its way: let it land, then this path is a duplicate
                    if item is not None and self.db.has_photo(user, item.path_row[3]):
                        self._known_content(user, root, rel, item.old, item.path_row, report)
                    elif item is not None:
                        item.future = pool.submit(rel, item.data, categories)
                        item.data = b""
                        waiting.append(item)
                        if len(waiting) >= (2 * pool.workers if pool.workers > 1 else 1):
                            land()
                        continue
                except (RcmuError, OSError) as exc:
                    self._skip(user, root, rel, path, exc, known.get(rel), report)
                finished()
            while waiting:
                land()
        finally:
            pool.close()
        return seen

    # ---- one file --------------------------------------------------------------------------------
    def _triage(
        self, user: str, root: str, rel: str, path: Path, old: Any, bad: Any, report: IndexReport
    ) -> _Waiting | None:
        """None when the path needs nothing (unchanged, or failed before and unchanged since); else its
        bytes and hash, to be matched against known content."""
        stat = path.stat()
        if _same_file(stat, old):
            report.unchanged += 1
            return None
        if _same_file(stat, bad):
            report.skipped.append(SkippedFile(path=str(path), reason=bad["reason"]))
            return None
        if stat.st_size > self.settings.max_image_bytes:
            raise InvalidInputError(
                f"{path} is {stat.st_size / 2**20:.1f} MiB, over the {self.settings.max_image_bytes / 2**20:.0f} MiB"
                " limit",
                "raise RCMU_MAX_IMAGE_BYTES to index it",
            )
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        path_row = (user, root, rel, digest[:24], stat.st_size, stat.st_mtime_ns)
        return _Waiting(rel=rel, path=path, old=old, path_row=path_row, digest=digest, data=data)

    def _skip(self, user: str, root: str, rel: str, path: Path, exc: Exception, old: Any, report: IndexReport) -> None:
        reason = exc.problem if isinstance(exc, RcmuError) else f"unreadable ({getattr(exc, 'strerror', None) or exc})"
        report.skipped.append(SkippedFile(path=str(path), reason=reason))
        self._remember_bad(user, root, rel, path, reason, old)

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
                    'SELECT root, rel FROM paths WHERE "user"=? AND photo_id=?', (user, photo_id)
                ).fetchall()
                gone = [o for o in others if not (Path(o["root"]) / o["rel"]).exists()]
                if gone:
                    conn.execute(
                        'DELETE FROM paths WHERE "user"=? AND root=? AND rel=?', (user, gone[0]["root"], gone[0]["rel"])
                    )
                    report.moved += 1
                else:
                    report.duplicates += 1
            self.db.put_path(conn, path_row)
            conn.execute('DELETE FROM bad_files WHERE "user"=? AND root=? AND rel=?', (user, root, rel))

    def _commit_pixels(
        self, user: str, root: str, item: _Waiting, px: Pixels, clusters: ClusterIndex, report: IndexReport
    ) -> None:
        """Recognition against the memory (here, the single reader of it), then one commit."""
        regions = px.faces + px.objects
        entries = self.recognizer.match(user, regions)
        named = [(e.entity_id, e.name, e.distance) if e.entity_id else None for e in entries]
        rows = [
            {"x1": r.box[0], "y1": r.box[1], "x2": r.box[2], "y2": r.box[3], "category": r.category,
             "name": n[1] if n else None}
            for r, n in zip(regions, named, strict=True)
        ]  # fmt: skip
        computed = {
            "size": (px.width, px.height),
            "taken_at": px.taken_at,
            "place": px.place,
            "regions": regions,
            "named": named,
            "context": context_text(item.rel, px.width, px.taken_at, px.place, rows),
            "image_vector": px.image_vector,
        }
        self._commit_new(user, root, item.rel, item.old, item.path_row, item.digest, computed, clusters)
        report.added += 1
        report.faces += len(px.faces)

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
        photo_id = path_row[3]
        width, height = c["size"] if "size" in c else c["image"].size
        given = c.get("text_vectors")  # imports and benchmarks bring their own
        if given is not None:
            self.store.write_text_vectors(user, [photo_id], [c["context"]], given)
        if c["image_vector"] is not None:
            self.store.col(IMAGE_COLLECTION).upsert(
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
            self.db.put_photo(
                conn,
                (user, photo_id, digest, width, height, path_row[4],
                 taken.isoformat() if taken else None, place[0] if place else None, place[1] if place else None,
                 rel, c["context"], int(given is not None)),
            )  # fmt: skip
            self.db.put_path(conn, path_row)
            conn.execute('DELETE FROM bad_files WHERE "user"=? AND root=? AND rel=?', (user, root, rel))
            cluster_ids = dict(
                zip(unknown, clusters.assign(conn, [regions[i].descriptor for i in unknown]), strict=True)
            )
            for i, (r, n) in enumerate(zip(regions, named, strict=True)):
                conn.execute(
                    'INSERT INTO regions ("user", photo_id, x1, y1, x2, y2, category, score, source, descriptor, '
                    "entity_id, name, name_key, distance, named_by, cluster_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (user, photo_id, *r.box, r.category, r.score, r.source,
                     encode_vector(r.descriptor if r.category == "person" else None),
                     n[0] if n else None, n[1] if n else None, name_key(n[1]) if n else None, n[2] if n else None,
                     "memory" if n else None, cluster_ids.get(i)),
                )  # fmt: skip
            self.store.bump(conn, user)
        clusters.commit()

    # ---- paths that went away --------------------------------------------------------------------
    def _drop_path(self, conn: Any, user: str, root: str, rel: str, photo_id: str) -> None:
        """Forget one path; the photo goes with its last path (its vectors after the commit)."""
        conn.execute('DELETE FROM paths WHERE "user"=? AND root=? AND rel=?', (user, root, rel))
        left = conn.execute('SELECT 1 FROM paths WHERE "user"=? AND photo_id=? LIMIT 1', (user, photo_id)).fetchone()
        if left is None:
            self.db.delete_photo(conn, user, photo_id)
            self._orphans.append(photo_id)

    def _remove_missing(self, user: str, root: str, seen: set[str]) -> int:
        gone = [rel for rel in self.db.paths_under(user, root) if rel not in seen]
        fixed = [rel for rel in self.db.bad_under(user, root) if rel not in seen]  # failed files gone since
        with self.db.transaction() as conn:
            for rel in gone:
                row = conn.execute(
                    'SELECT photo_id FROM paths WHERE "user"=? AND root=? AND rel=?', (user, root, rel)
                ).fetchone()
                if row is not None:
                    self._drop_path(conn, user, root, rel, row["photo_id"])
            conn.executemany(
                'DELETE FROM bad_files WHERE "user"=? AND root=? AND rel=?', [(user, root, rel) for rel in fixed]
            )
            if gone:
                self.store.bump(conn, user)
        self.store.delete_vectors(user, self._orphans)
        conn_rows = self.db.rows('SELECT id FROM clusters WHERE "user"=? AND id NOT IN '
                                 '(SELECT DISTINCT cluster_id FROM regions WHERE "user"=? AND cluster_id IS NOT NULL)',
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
                self.store.bump(conn, user)
        try:
            stat = path.stat()
        except OSError:
            return
        with self.db.transaction() as conn:
            self.db.put_bad(conn, (user, root, rel, stat.st_size, stat.st_mtime_ns, reason))


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _same_file(stat: Any, row: Any) -> bool:
    """The path still has the size and mtime a sidecar row recorded: its bytes are not read again."""
    return row is not None and (row["size"], row["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)


def _changed(path: Path, old: Any, bad: Any) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False  # reported when the walk reaches it
    return not _same_file(stat, old) and not _same_file(stat, bad)
