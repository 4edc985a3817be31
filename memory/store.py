"""The personal memory: entities, their reference descriptors, and recognition, in Chroma.

Three collections, each bound to the model that made its vectors: `entities` (MiniLM over name and
info, for memory questions), `faces` (dlib descriptors of people's reference photos) and
`object_images` (CLIP embeddings of objects' reference photos). Every read and write filters by user.
An entity's row is written last and deleted first, so a crash mid-write leaves at most orphan
vectors and photo copies, which recognition ignores (a vector counts only once its entity's row lists
its photo) and the next write removes (they are listed in a journal first). Reference photos and the
journal are kept by `_references`: under the home, or in PostgreSQL when `database_url` is set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rcmu_agent.errors import InvalidInputError, MemoryLockedError, NotFoundError, RcmuError
from rcmu_agent.faces import FACE_DESCRIPTOR_MODEL
from rcmu_agent.memory._client import collection, get_all, open_client, write_lock
from rcmu_agent.memory._records import (
    WORD,
    Match,
    ReferencePhoto,
    Teaching,
    name_key,
    new_stamp,
)
from rcmu_agent.memory._references import memory_storage
from rcmu_agent.memory._store_write import BatchWrite, recover_write
from rcmu_agent.memory._vectors import VectorCache
from rcmu_agent.memory.text_embedder import TextEmbedder
from rcmu_agent.prompt import clean_text
from rcmu_agent.schema import Entity
from rcmu_agent.users import check_user

if TYPE_CHECKING:
    from rcmu_agent.settings import Settings

__all__ = ["Match", "MemoryStore", "ReferencePhoto", "Teaching"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _chroma_error(exc: Exception) -> bool:
    """Chroma's own errors (a stale view reads "Error finding id"), not a bug of ours."""
    return type(exc).__module__.startswith("chromadb")


class MemoryStore:
    """Entities per user, with recognition by nearest reference under a threshold."""

    def __init__(
        self,
        home: Path,
        *,
        chroma_url: str | None = None,
        image_model: str | None = None,
        lock_timeout: float = 10.0,
        database_url: str | None = None,
    ) -> None:
        self.home = Path(home)
        self.chroma_url = chroma_url
        self.database_url = database_url  # replicas: writers take PostgreSQL's lock (memory._client.write_lock)
        self.image_model = image_model
        self.lock_timeout = lock_timeout
        self.references, self.journal = memory_storage(self.home, database_url)
        self._client: Any = None
        self._cols: dict[str, Any] = {}
        self._cols_lock = threading.Lock()  # concurrent first use opened two clients and failed
        self._text = TextEmbedder()
        self._vectors = VectorCache()
        self._generation = 0  # fresh views of embedded Chroma opened after another process wrote

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryStore:
        return cls(
            settings.home,
            chroma_url=settings.chroma_url,
            image_model=settings.image_embedding_model,
            lock_timeout=settings.lock_timeout,
            database_url=settings.database_url,
        )

    # ---- collections ---------------------------------------------------------------------------
    def _col(self, name: str) -> Any:
        with self._cols_lock:
            return self._open_col(name)

    def _open_col(self, name: str) -> Any:
        if name not in self._cols:
            if self._client is None:
                self._client = open_client(self.home, self.chroma_url, generation=self._generation)
            model, space = {
                "entities": (self._text.model_name, "cosine"),
                "faces": (FACE_DESCRIPTOR_MODEL, "l2"),
                "object_images": (self.image_model or "none", "cosine"),
                "profiles": ("none", "l2"),
            }[name]
            self._cols[name] = collection(self._client, name, model, space)
        return self._cols[name]

    def _fresh(self, read: Callable[[], T]) -> T:
        """`read()`, retried on a fresh view of embedded Chroma while another process's writes make this
        one's stale (a few tries over at most `lock_timeout`, backing off: a busy writer may commit
        several batches in a row); then a clear "busy" error instead of Chroma's internals."""
        deadline = time.monotonic() + max(self.lock_timeout, 0.5)
        pause = 0.05
        while True:
            try:
                return read()
            except RcmuError:
                raise
            except Exception as exc:
                if self.chroma_url or not _chroma_error(exc):
                    raise
                if time.monotonic() + pause > deadline:
                    raise MemoryLockedError(
                        f"the memory at {self.home} is being changed by another process", "retry in a moment"
                    ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            with self._cols_lock:
                old, self._client, self._cols = self._client, None, {}
                self._generation += 1
            with contextlib.suppress(Exception):
                old.close()

    # ---- reading -------------------------------------------------------------------------------
    @staticmethod
    def _entity(entity_id: str, meta: dict[str, Any], document: str | None) -> Entity:
        return Entity(
            id=entity_id,
            user=meta["user"],
            name=meta["name"],
            category=meta["category"],
            info=document or "",
            photos=json.loads(meta.get("photos", "[]")),
            created_at=datetime.fromisoformat(meta["created_at"]),
        )

    def _get(self, user: str, where: dict[str, Any] | None = None, ids: list[str] | None = None) -> list[Entity]:
        """The user's entities, all of them or those matching `ids` / `where`.

        A narrow lookup (ids, names) is filtered by user here rather than in Chroma: intersecting it with
        the user's thousands of rows costs ~10 ms, the handful of rows it returns cost nothing.
        """
        include = ["metadatas", "documents"]
        if where is not None or ids is not None:
            got = self._col("entities").get(ids=ids, where=where, include=include)
        else:
            got = get_all(self._col("entities"), where={"user": user}, include=include)
        return [
            self._entity(i, m, d)
            for i, m, d in zip(got["ids"], got["metadatas"], got["documents"], strict=True)
            if m["user"] == user
        ]

    def entities(self, user: str) -> list[Entity]:
        return sorted(self._get(check_user(user)), key=lambda e: (e.category, e.name.lower()))

    def users(self) -> list[str]:
        return sorted(self._col("profiles").get(include=[])["ids"])

    def get(self, user: str, key: str) -> Entity:
        """An entity by id or (case-insensitive) name."""
        check_user(user)
        found = self._get(user, ids=[key]) or self._get(user, {"name_key": name_key(key)})
        if not found:
            raise NotFoundError(f"user {user!r} has no entity {key!r}", "see `rcmu list` for the names and ids")
        return found[0]

    def _profile(self, user: str) -> dict[str, Any] | None:
        got = self._col("profiles").get(ids=[user], include=["metadatas"])
        return dict(got["metadatas"][0]) if got["ids"] else None

    def stamp(self, user: str) -> str:
        """Changes whenever `user`'s memory does: what others recognised against it is stale once it differs."""
        profile = self._profile(check_user(user))
        return str(profile.get("stamp", "")) if profile else ""

    def categories(self, user: str) -> list[str]:
        """Categories the user has taught (the object detector is asked for exactly these)."""
        profile = self._profile(check_user(user))
        return json.loads(profile["categories"]) if profile else []

    def named_in(self, user: str, text: str) -> list[Entity]:
        """Entities whose full or first name appears as words in `text` ("photos of Rose with Kit")."""
        words = [name_key(w) for w in WORD.findall(text.lower())]
        grams = sorted({" ".join(words[i : i + n]) for n in range(1, 5) for i in range(len(words) - n + 1)})
        if not grams:
            return []
        where = {"$or": [{"name_key": {"$in": grams}}, {"first_key": {"$in": grams}}]}
        return self._get(check_user(user), where)

    def search(self, user: str, text: str, k: int = 5) -> list[tuple[Entity, float]]:
        """Entities whose name and info are closest in meaning to `text`, with cosine similarity."""
        query = self._text.embed([text])
        return self._fresh(lambda: self._search(check_user(user), query, k))

    def _search(self, user: str, query: Any, k: int) -> list[tuple[Entity, float]]:
        col = self._col("entities")
        if col.count() == 0:
            return []
        got = col.query(
            query_embeddings=query,
            n_results=k,
            where={"user": user},
            include=["metadatas", "documents", "distances"],
        )
        return [
            (self._entity(i, m, d), 1.0 - dist)
            for i, m, d, dist in zip(
                got["ids"][0], got["metadatas"][0], got["documents"][0], got["distances"][0], strict=True
            )
        ]

    # ---- recognition ---------------------------------------------------------------------------
    def match_faces(self, user: str, descriptors: Sequence[Sequence[float]], threshold: float) -> list[Match | None]:
        """Each face's person, or None: nearest reference under `threshold`, one face per person."""
        return self._match("faces", user, descriptors, threshold, None, squared_l2=True)

    def match_objects(
        self, user: str, embeddings: Sequence[Sequence[float]], categories: Sequence[str], min_similarity: float
    ) -> list[Match | None]:
        """Each object's entity, or None: nearest reference of the same category above `min_similarity`."""
        if not self.image_model:
            return [None] * len(embeddings)
        matches: list[Match | None] = [None] * len(embeddings)
        for category in sorted(set(categories)):  # one call per category: one region per entity within it
            rows = [i for i, c in enumerate(categories) if c == category]
            found = self._match(
                "object_images", user, [embeddings[i] for i in rows], 1.0 - min_similarity, category, squared_l2=False
            )
            for i, match in zip(rows, found, strict=True):
                matches[i] = match
        return matches

    def _match(
        self,
        name: str,
        user: str,
        vectors: Sequence[Sequence[float]],
        threshold: float,
        category: str | None,
        *,
        squared_l2: bool,
    ) -> list[Match | None]:
        """Nearest references, exact, then one region per entity (closest pairs first)."""
        result: list[Match | None] = [None] * len(vectors)
        profile = self._profile(check_user(user))
        if not vectors or profile is None:
            return result
        pairs = self._fresh(
            lambda: self._nearest(name, user, profile, vectors, threshold, category, squared_l2=squared_l2)
        )
        entities = {e.id: e for e in self._get(user, ids=sorted({p[2] for p in pairs}))} if pairs else {}
        taken: set[str] = set()
        for distance, row, entity_id in sorted(pairs):  # closest pairs first: one region per entity
            entity = entities.get(entity_id)  # None: an orphan vector from an interrupted write
            if entity is not None and result[row] is None and entity_id not in taken:
                result[row] = Match(entity, distance)
                taken.add(entity_id)
        return result

    def _nearest(
        self,
        name: str,
        user: str,
        profile: dict[str, Any],
        vectors: Sequence[Sequence[float]],
        threshold: float,
        category: str | None,
        *,
        squared_l2: bool,
    ) -> list[tuple[float, int, str]]:
        return self._vectors.nearest(
            self._col(name),
            user,
            profile.get("stamp", ""),
            [list(v) for v in vectors],
            metric="l2" if squared_l2 else "cosine",
            threshold=threshold,
            category=category,
            committed=lambda: self._committed_vectors(user),
        )

    def _committed_vectors(self, user: str) -> set[str]:
        """Ids of the vectors the user's entities list (`entity:digest`): a write's own commit point."""
        return {f"{e.id}:{Path(p).stem}" for e in self._get(user) for p in e.photos}

    # ---- writing -------------------------------------------------------------------------------
    def remember(self, user: str, name: str, info: str, category: str, photos: Sequence[ReferencePhoto]) -> Entity:
        """Add an entity, or update the one with the same name (new info replaces, photos add up)."""
        return self.remember_many(user, [Teaching(name, info, category, tuple(photos))])[0]

    def remember_many(self, user: str, items: Sequence[Teaching]) -> list[Entity]:
        """Teach many entities in one write (one lock, batched embeddings): imports, benchmark galleries."""
        check_user(user)
        items = [
            Teaching(
                clean_text(t.name, "name", max_chars=100),
                clean_text(t.info, "info"),
                clean_text(t.category, "category", max_chars=50).lower(),
                tuple(t.photos),
                t.entity_id,
                t.created_at,
            )
            for t in items
        ]
        if len({name_key(t.name) for t in items}) != len(items):
            raise InvalidInputError("the same name appears twice in one batch", "merge their photos and info")
        # embedded and opened before the lock: a cold MiniLM load or Chroma start (seconds on a busy
        # machine) must not make other writers wait, or time out as "busy"
        texts = self._text.embed([f"{t.name}. {t.info}" for t in items])
        self._col("entities")
        with write_lock(self.home, self.lock_timeout, self.database_url):
            recover_write(self)
            entities = BatchWrite(self, user, items, texts).run()
        log.info("remembered %d entit(ies) for user %s", len(entities), user)
        return entities

    def recover(self) -> None:
        """Finish the cleanup of a write that was killed (orphan vectors, photo copies, the profile)."""
        with write_lock(self.home, self.lock_timeout, self.database_url):
            recover_write(self)

    def _update_profile(self, user: str, add: set[str] | None = None) -> None:
        """Per-user summary (categories, count) so asking never scans every entity."""
        if add is not None:
            got = self._col("profiles").get(ids=[user], include=["metadatas"])
            categories = (set(json.loads(got["metadatas"][0]["categories"])) if got["ids"] else set()) | add
            self._col("profiles").upsert(
                ids=[user],
                embeddings=[[1.0]],
                metadatas=[{"user": user, "categories": json.dumps(sorted(categories)), "stamp": new_stamp()}],
            )
            return
        metas = get_all(self._col("entities"), where={"user": user}, include=["metadatas"])["metadatas"]
        if not metas:
            self._col("profiles").delete(ids=[user])
            return
        categories = {m["category"] for m in metas}
        self._col("profiles").upsert(
            ids=[user],
            embeddings=[[1.0]],
            metadatas=[{"user": user, "categories": json.dumps(sorted(categories)), "stamp": new_stamp()}],
        )

    def forget(self, user: str, key: str) -> Entity:
        """Remove an entity, its vectors and its copied photos."""
        entity = self.get(user, key)
        with write_lock(self.home, self.lock_timeout, self.database_url):
            self._col("entities").delete(ids=[entity.id])  # first: from here on nothing can match it
            for col_name in ("faces", "object_images"):
                if col_name != "object_images" or self.image_model:
                    self._col(col_name).delete(where={"entity_id": entity.id})
            self.references.forget(user, entity.id)
            self._update_profile(user)
        log.info("forgot %s (%s) for user %s", entity.name, entity.id, user)
        return entity
