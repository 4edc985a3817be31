"""The import's single writer: check each row, skip what memory already holds, commit the rest in batches.

A row is planned (checked, compared with memory, its faces handed to the pool) as soon as it is read,
and taken (its descriptions collected, queued for the next batch) in input order, so detection runs
ahead of the writes. A batch the store refuses as a whole is retried row by row, so one conflicting
row is reported as `FILE:LINE: reason` and costs nobody else their place.

A row's photos are read once, when it is planned, through `_paths.read_photo` (a row of an
export or a knowledge base stays inside its folder); the bytes serve the "already there?" check, the
face workers and the store, and no path is opened again.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rcmu_agent.errors import InvalidInputError, RcmuError
from rcmu_agent.memory._records import ReferencePhoto, Teaching, name_key, photo_digest
from rcmu_agent.memory.transfer._faces import Described, FacePool
from rcmu_agent.memory.transfer._paths import Photo, read_photo
from rcmu_agent.memory.transfer._read import ImportRow
from rcmu_agent.prompt import clean_text
from rcmu_agent.schema import Entity, ImportReport, normalize_category

if TYPE_CHECKING:
    from rcmu_agent.recognizer import Recognizer

__all__ = ["Loader", "Planned", "person_photos"]

log = logging.getLogger(__name__)
FLUSH_SECONDS = 2.0  # a slow import still commits (and so can resume) every couple of seconds


def person_photos(row: ImportRow) -> int:
    """The photos of `row` that need a face described: those of a person (a row without a category is one)."""
    return len(row.photos) if (normalize_category(row.category) or "person") == "person" else 0


@dataclass
class Planned:
    """A row that passed the checks and is not in memory yet, with its faces being described."""

    row: ImportRow
    name: str
    info: str
    category: str
    old: Entity | None
    photos: list[Photo]
    faces: list[Future[Described]] | None  # None: not a person (embedded here, if a model is configured)


class Loader:
    """Plans, takes and commits rows for one user; closes its worker pool on exit."""

    def __init__(
        self,
        recognizer: Recognizer,
        user: str,
        report: ImportReport,
        *,
        workers: int,
        batch: int,
        photos_left: int | None = None,
    ) -> None:
        """`photos_left`: the people's photos in the rows to come, when the workers are to start only
        once enough of them need describing (`FacePool`); None starts them with the first photo."""
        if recognizer.memory is None:
            raise ValueError("an import needs a recognizer with a memory to write to")
        self.recognizer = recognizer
        self.user = user
        self.report = report
        self.batch_size = max(1, batch)
        self.store = recognizer.memory
        self.home = self.store.home  # never imported from: other users' photos and the databases live there
        self.store.recover()  # an import killed mid-batch left vectors without an entity: drop them first
        entities = self.store.entities(user)
        self.by_name = {name_key(e.name): e for e in entities}
        self.by_id = {e.id: e for e in entities}
        self.claimed: dict[str, str] = {}  # name key → category, for rows of this import
        self._changing: set[str] = set()  # name keys a planned row of this import will write
        self.pool = FacePool(recognizer, workers, left=photos_left)
        self._batch: list[tuple[Planned, Teaching]] = []
        self._keys: set[str] = set()
        self._flushed = time.monotonic()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()

    def fail(self, row: ImportRow, reason: str) -> None:
        self.report.failed.append(f"{row.where}: {reason}")

    # ---- planning --------------------------------------------------------------------------------------
    def plan(self, row: ImportRow) -> Planned | None:
        """Check a row against memory and this import; None when it failed or is already there."""
        if self.pool.left is not None:  # the photos of the rows after this one
            self.pool.left -= person_photos(row)
        try:
            name = clean_text(row.name, "name", max_chars=100)
            info = clean_text(row.info, "info")  # the limits the store applies
            category = normalize_category(row.category) or "person"
        except InvalidInputError as exc:
            self.fail(row, exc.problem)
            return None
        key = name_key(name)
        if not key:
            self.fail(row, f"name {name!r} has no letters or digits")
            return None
        named = self.by_name.get(key)
        old = self.by_id.get(row.entity_id) if row.entity_id else None
        if old is not None and named is not None and named.id != old.id:
            self.fail(row, f"{name!r} is already the name of another entity ({named.id})")
            return None
        old = old or named
        expected = old.category if old is not None else self.claimed.get(key)
        if expected is not None and expected != category:
            self.fail(row, f"{name!r} is already remembered as a {expected}")
            return None
        self.claimed[key] = category
        photos = self._read(row)
        if photos is None:
            return None
        # skipped only if no earlier row of this import is about to change it (the last row wins)
        if old is not None and old.name == name and old.info == info and key not in self._changing:
            stems = {Path(p).stem for p in old.photos}
            if all(photo_digest(p.data) in stems for p in photos):
                self.report.unchanged += 1
                return None
        self._changing.add(key)
        faces = [self.pool.submit(p) for p in photos] if category == "person" else None
        return Planned(row, name, info, category, old, photos, faces)

    def _read(self, row: ImportRow) -> list[Photo] | None:
        """The row's photos, each read once (see the module doc); None when one cannot be, and the row
        failed with the first reason."""
        photos = []
        for path in row.photos:
            try:
                photos.append(
                    read_photo(path, row.folder, max_bytes=self.recognizer.settings.max_image_bytes, home=self.home)
                )
            except RcmuError as exc:
                self.fail(row, exc.problem)
                return None
        return photos

    # ---- taking and committing -------------------------------------------------------------------------
    def take(self, planned: Planned) -> None:
        """Collect a planned row's photo vectors and queue it for the next commit."""
        row = planned.row
        try:
            photos = self._faces(planned) if planned.faces is not None else self._objects(planned)
        except _RowError as exc:
            self.fail(row, str(exc))
            return
        unique = {photo_digest(p.data): p for p in photos}  # the same photo named twice is one reference
        teaching = Teaching(
            planned.name, planned.info, planned.category, tuple(unique.values()), row.entity_id, row.created_at
        )
        keys = {
            f"name:{name_key(planned.name)}",
            f"id:{row.entity_id or ''}",
            f"id:{planned.old.id if planned.old else ''}",
        }
        keys -= {"id:"}
        if keys & self._keys:  # the same entity twice in one batch: commit the first one before
            self.flush()
        key = name_key(planned.name)  # an earlier row of this import may have created it since planning
        planned.old = (self.by_id.get(row.entity_id) if row.entity_id else None) or self.by_name.get(key)
        self._batch.append((planned, teaching))
        self._keys |= keys
        if len(self._batch) >= self.batch_size or time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.flush()

    def _faces(self, planned: Planned) -> list[ReferencePhoto]:
        photos = []
        for photo, future in zip(planned.photos, planned.faces or [], strict=True):
            described = future.result()
            if described.error:
                raise _RowError(described.error)
            if described.faces > 1:
                log.warning("%s: %d faces in a photo; using the largest", planned.row.where, described.faces)
            photos.append(ReferencePhoto(photo.data, photo.suffix, face_descriptor=described.descriptor))
        return photos

    def _objects(self, planned: Planned) -> list[ReferencePhoto]:
        """Non-person photos: embedded here with the image model (CLIP), or kept without a vector."""
        from rcmu_agent.images import load_image

        settings = self.recognizer.settings
        photos = []
        for photo in planned.photos:
            try:
                image = load_image(photo.data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
            except RcmuError as exc:
                raise _RowError(f"photo {photo.label}: {exc.problem}") from exc
            ref = self.recognizer.describe_reference(image, planned.category, photo.label)
            photos.append(ReferencePhoto(photo.data, photo.suffix, image_embedding=ref.image_embedding))
        return photos

    def flush(self) -> None:
        """Commit the queued rows in one write; if the store refuses the batch, row by row."""
        batch, self._batch, self._keys = self._batch, [], set()
        self._flushed = time.monotonic()
        if not batch:
            return
        try:
            entities = self.store.remember_many(self.user, [t for _, t in batch])
        except InvalidInputError as exc:
            if len(batch) == 1:
                self.fail(batch[0][0].row, exc.problem)
                return
            for one in batch:
                try:
                    self._done(one[0], self.store.remember_many(self.user, [one[1]])[0])
                except InvalidInputError as exc:
                    self.fail(one[0].row, exc.problem)
            return
        for (planned, _), entity in zip(batch, entities, strict=True):
            self._done(planned, entity)

    def _done(self, planned: Planned, entity: Entity) -> None:
        if planned.old is None:
            self.report.added += 1
        else:
            self.report.updated += 1
            self.by_name.pop(name_key(planned.old.name), None)
        self.by_name[name_key(entity.name)] = entity
        self.by_id[entity.id] = entity


class _RowError(Exception):
    """A row whose photos cannot be used; the message is the reason reported for it."""
