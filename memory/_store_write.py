"""Teaching entities as one journalled write, and finishing one that was killed.

Order is what makes a crash harmless: the journal first lists the photos the write will add, then
the photo copies and their vectors land, then the entities' rows. An entity's row is the commit point
(recognition counts a vector only once its entity lists the photo), so a write killed before it
leaves orphans that `recover_write` removes using the journal — before the next write or import.
Photos and journal live where `_references` keeps them: the home folder, or the shared PostgreSQL
database, where the next writer on any replica finishes a write another replica was killed in.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.memory._records import (
    ReferencePhoto,
    Teaching,
    check_entity_id,
    chunked,
    entity_meta,
    name_key,
    photo_digest,
)
from rcmu_agent.memory._references import ReferencePhotos, WriteJournal
from rcmu_agent.schema import Entity

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BatchWrite", "recover_write"]

log = logging.getLogger(__name__)
Vectors = dict[str, tuple[list[str], list[list[float]], list[dict[str, Any]]]]
CHUNK = 2000  # rows per Chroma upsert


class MemoryStore(Protocol):
    """What a write needs of `rcmu_agent.memory.store.MemoryStore` (which calls it: no import back)."""

    home: Path
    image_model: str | None
    references: ReferencePhotos
    journal: WriteJournal

    def _col(self, name: str) -> Any: ...
    def _get(self, user: str, where: dict[str, Any] | None = None, ids: list[str] | None = None) -> list[Entity]: ...
    def _update_profile(self, user: str, add: set[str] | None = None) -> None: ...


class BatchWrite:
    """One batch of teachings for one user; `run` holds no lock itself (the store's caller does)."""

    def __init__(self, store: MemoryStore, user: str, items: Sequence[Teaching], texts: np.ndarray) -> None:
        self.store, self.user, self.items, self.texts = store, user, list(items), texts
        self.journal = store.journal
        self.vectors: Vectors = {"faces": ([], [], []), "object_images": ([], [], [])}
        self.created: dict[str, list[str]] = {}  # entity id → digests of the photo copies this write created

    def run(self) -> list[Entity]:
        store, user = self.store, self.user
        keys = [name_key(t.name) for t in self.items]
        existing = {
            name_key(e.name): e for chunk in chunked(keys, 500) for e in store._get(user, {"name_key": {"$in": chunk}})
        }
        olds, ids = resolve_ids(store, user, self.items, keys, existing)
        kept = {e.id: {Path(p).stem for p in e.photos} for e in olds if e}  # an update keeps these
        digests = [[photo_digest(p.data) for p in t.photos] for t in self.items]
        keep_journal = False  # only when a rollback could not finish
        try:
            self.journal.write(json.dumps({"user": user, "entities": dict(zip(ids, digests, strict=True))}))
            entities = [self._entity(t, i, old) for t, i, old in zip(self.items, ids, olds, strict=True)]
            self._commit(entities)
        except BaseException:
            keep_journal = not self._rollback(kept)
            raise
        finally:
            if not keep_journal:
                self.journal.clear()
        return entities

    def _entity(self, t: Teaching, entity_id: str, old: Entity | None) -> Entity:
        """The entity as it will be stored; its photos are copied (and their vectors queued) now."""
        stored = [self._store_photo(entity_id, p, t.category) for p in t.photos]
        created = old.created_at if old else t.created_at  # an update keeps it; an import brings it
        return Entity(
            id=entity_id,
            user=self.user,
            name=t.name,
            category=t.category,
            info=t.info,
            photos=sorted({*(old.photos if old else []), *stored}),
            **({"created_at": created} if created else {}),
        )

    def _store_photo(self, entity_id: str, photo: ReferencePhoto, category: str) -> str:
        digest = photo_digest(photo.data)
        stored, created = self.store.references.put(self.user, entity_id, photo.data, photo.suffix)
        if created:
            self.created.setdefault(entity_id, []).append(digest)
        meta = {"user": self.user, "entity_id": entity_id, "category": category, "photo": stored}
        for col_name, vector in (("faces", photo.face_descriptor), ("object_images", photo.image_embedding)):
            if vector is not None:
                ids, embeddings, metas = self.vectors[col_name]
                ids.append(f"{entity_id}:{digest}")
                embeddings.append([float(v) for v in vector])
                metas.append(meta)
        return stored

    def _commit(self, entities: list[Entity]) -> None:
        """Vectors, then the entity rows. The profile (categories, stamp) exists before the rows that
        need it, and gets a fresh stamp again after them, so no reader caches a snapshot from the
        middle of the write."""
        store = self.store
        for col_name, (vector_ids, embeddings, metas) in self.vectors.items():
            for at in range(0, len(vector_ids), CHUNK):
                store._col(col_name).upsert(
                    ids=vector_ids[at : at + CHUNK],
                    embeddings=embeddings[at : at + CHUNK],
                    metadatas=metas[at : at + CHUNK],
                )
        categories = {e.category for e in entities}
        store._update_profile(self.user, categories)
        for at in range(0, len(entities), CHUNK):
            batch = entities[at : at + CHUNK]
            store._col("entities").upsert(
                ids=[e.id for e in batch],
                embeddings=self.texts[at : at + CHUNK],
                documents=[e.info for e in batch],
                metadatas=[entity_meta(e) for e in batch],
            )
        store._update_profile(self.user, categories)

    def _rollback(self, kept: dict[str, set[str]]) -> bool:
        """Remove what this write added; False when a vector could not be removed (the journal then
        stays, and the next write retries)."""
        for entity_id, digests in self.created.items():
            self.store.references.remove(self.user, entity_id, digests)
        done = True
        for col_name, (vector_ids, _, _) in self.vectors.items():
            added = [i for i in vector_ids if i.rsplit(":", 1)[-1] not in kept.get(i.rsplit(":", 1)[0], set())]
            if added:
                try:
                    self.store._col(col_name).delete(ids=added)
                except Exception:
                    log.exception("could not undo %d vector(s) in %s", len(added), col_name)
                    done = False
        return done


def resolve_ids(
    store: MemoryStore, user: str, items: Sequence[Teaching], keys: Sequence[str], existing: dict[str, Entity]
) -> tuple[list[Entity | None], list[str]]:
    """Which stored entity each item updates (same id first, then same name) and the ids to write.

    An item's own `entity_id` (an import) is kept for a new entity unless any user already holds it:
    ids are global in Chroma, so reusing another user's id would overwrite their entity.
    """
    wanted = sorted({check_entity_id(t.entity_id) for t in items if t.entity_id})
    owned = {e.id: e for e in store._get(user, ids=wanted)} if wanted else {}
    taken = set(store._col("entities").get(ids=wanted, include=[])["ids"]) if wanted else set()
    olds: list[Entity | None] = []
    ids: list[str] = []
    for t, key in zip(items, keys, strict=True):
        old = owned.get(t.entity_id or "") or existing.get(key)
        named = existing.get(key)
        if old is not None and named is not None and named.id != old.id:
            raise InvalidInputError(
                f"{t.name!r} is already the name of another entity ({named.id})",
                f"rename one of them, or `rcmu forget {named.id}` first",
            )
        if old is not None and old.category != t.category:
            raise InvalidInputError(
                f"{t.name!r} is already remembered as a {old.category}",
                f"use --category {old.category}, or `rcmu forget {t.name!r}` first",
            )
        olds.append(old)
        if old is not None:
            ids.append(old.id)
        elif t.entity_id and t.entity_id not in taken:
            ids.append(t.entity_id)
        else:
            ids.append(uuid.uuid4().hex[:12])
    if len(set(ids)) != len(ids):
        raise InvalidInputError("two items in one batch are the same entity", "merge their photos and info")
    return olds, ids


def recover_write(store: MemoryStore) -> None:
    """Undo the vectors and photo copies of a write that was killed before its entity rows landed.
    The caller holds the memory's write lock."""
    body = store.journal.read()
    if body is None:
        return
    try:
        intent = json.loads(body)
        user, planned = intent["user"], dict(intent["entities"])
    except (ValueError, KeyError, TypeError):
        store.journal.clear()
        return
    for entity_id, digests in planned.items():
        got = store._col("entities").get(ids=[entity_id], include=["metadatas"])
        kept = json.loads(got["metadatas"][0]["photos"]) if got["ids"] else []
        lost = [d for d in digests if not any(d in Path(p).name for p in kept)]
        if not lost:
            continue
        log.warning("removing %d vector(s) left by an interrupted write", len(lost))
        for col_name in ("faces", "object_images"):
            if col_name == "faces" or store.image_model:
                store._col(col_name).delete(ids=[f"{entity_id}:{d}" for d in lost])
        store.references.remove(user, entity_id, lost)  # the photo copies too (also a half-written temp file)
    store._update_profile(user)
    store.journal.clear()
