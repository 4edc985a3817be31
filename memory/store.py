"""The personal memory: entities, their reference descriptors, and recognition, in Chroma.

Three collections, each bound to the model that made its vectors: `entities` (MiniLM over name and
info, for memory questions), `faces` (dlib descriptors of people's reference photos) and
`object_images` (CLIP embeddings of objects' reference photos). Every read and write filters by user.
An entity's row is written last and deleted first, so a crash mid-write leaves at most orphan
vectors and photo copies, which recognition ignores and the next write removes (they are listed in a
journal first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.faces import FACE_DESCRIPTOR_MODEL
from rcmu_agent.memory._client import collection, open_client, write_lock
from rcmu_agent.memory.text_embedder import TextEmbedder
from rcmu_agent.prompt import clean_text
from rcmu_agent.schema import Entity

if TYPE_CHECKING:
    from rcmu_agent.settings import Settings

__all__ = ["Match", "MemoryStore", "ReferencePhoto", "check_user"]

log = logging.getLogger(__name__)
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def check_user(user: str) -> str:
    if not isinstance(user, str) or not _USER.match(user):
        raise InvalidInputError(
            f"user id {user!r} is not valid", "use 1-64 letters, digits, '.', '_', '-' or '@', starting alphanumeric"
        )
    return user


def _key(name: str) -> str:
    return " ".join(w.removesuffix("'s").removesuffix("’s") for w in _WORD.findall(name.lower()))


@dataclass(frozen=True)
class ReferencePhoto:
    """One reference photo with the vector recognition will compare against."""

    data: bytes
    suffix: str
    face_descriptor: Sequence[float] | None = None
    image_embedding: Sequence[float] | None = None


@dataclass(frozen=True)
class Match:
    entity: Entity
    distance: float  # faces: Euclidean; objects: 1 - cosine


class MemoryStore:
    """Entities per user, with recognition by nearest reference under a threshold."""

    def __init__(
        self,
        home: Path,
        *,
        chroma_url: str | None = None,
        image_model: str | None = None,
        lock_timeout: float = 10.0,
    ) -> None:
        self.home = Path(home)
        self.chroma_url = chroma_url
        self.image_model = image_model
        self.lock_timeout = lock_timeout
        self._client: Any = None
        self._cols: dict[str, Any] = {}
        self._text = TextEmbedder()

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryStore:
        return cls(
            settings.home,
            chroma_url=settings.chroma_url,
            image_model=settings.image_embedding_model,
            lock_timeout=settings.lock_timeout,
        )

    # ---- collections ---------------------------------------------------------------------------
    def _col(self, name: str) -> Any:
        if name not in self._cols:
            if self._client is None:
                self._client = open_client(self.home, self.chroma_url)
            model, space = {
                "entities": (self._text.model_name, "cosine"),
                "faces": (FACE_DESCRIPTOR_MODEL, "l2"),
                "object_images": (self.image_model or "none", "cosine"),
            }[name]
            self._cols[name] = collection(self._client, name, model, space)
        return self._cols[name]

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
        clause = {"$and": [{"user": user}, where]} if where else {"user": user}
        got = self._col("entities").get(ids=ids, where=clause, include=["metadatas", "documents"])
        return [self._entity(i, m, d) for i, m, d in zip(got["ids"], got["metadatas"], got["documents"], strict=True)]

    def entities(self, user: str) -> list[Entity]:
        return sorted(self._get(check_user(user)), key=lambda e: (e.category, e.name.lower()))

    def has_user(self, user: str) -> bool:
        return bool(self._col("entities").get(where={"user": check_user(user)}, limit=1, include=[])["ids"])

    def users(self) -> list[str]:
        metas = self._col("entities").get(include=["metadatas"])["metadatas"]
        return sorted({m["user"] for m in metas})

    def get(self, user: str, key: str) -> Entity:
        """An entity by id or (case-insensitive) name."""
        check_user(user)
        found = self._get(user, ids=[key]) or self._get(user, {"name_key": _key(key)})
        if not found:
            raise NotFoundError(f"user {user!r} has no entity {key!r}", "see `rcmu list` for the names and ids")
        return found[0]

    def categories(self, user: str) -> list[str]:
        metas = self._col("entities").get(where={"user": check_user(user)}, include=["metadatas"])["metadatas"]
        return sorted({m["category"] for m in metas})

    def named_in(self, user: str, text: str) -> list[Entity]:
        """Entities whose full or first name appears as words in `text` ("photos of Rose with Kit")."""
        words = [_key(w) for w in _WORD.findall(text.lower())]
        grams = sorted({" ".join(words[i : i + n]) for n in range(1, 5) for i in range(len(words) - n + 1)})
        if not grams:
            return []
        where = {"$or": [{"name_key": {"$in": grams}}, {"first_key": {"$in": grams}}]}
        return self._get(check_user(user), where)

    def search(self, user: str, text: str, k: int = 5) -> list[tuple[Entity, float]]:
        """Entities whose name and info are closest in meaning to `text`, with cosine similarity."""
        col = self._col("entities")
        if col.count() == 0:
            return []
        got = col.query(
            query_embeddings=self._text.embed([text]),
            n_results=k,
            where={"user": check_user(user)},
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
        matches: list[Match | None] = []
        for embedding, category in zip(embeddings, categories, strict=True):
            found = self._match("object_images", user, [embedding], 1.0 - min_similarity, category, squared_l2=False)
            matches.extend(found)
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
        result: list[Match | None] = [None] * len(vectors)
        col = self._col(name)
        if not vectors or col.count() == 0:
            return result
        where: dict[str, Any] = {"user": check_user(user)}
        if category:
            where = {"$and": [where, {"category": category}]}
        got = col.query(
            query_embeddings=[list(v) for v in vectors], n_results=5, where=where, include=["metadatas", "distances"]
        )
        pairs: list[tuple[float, int, str]] = []
        for row, (metas, dists) in enumerate(zip(got["metadatas"], got["distances"], strict=True)):
            for meta, dist in zip(metas, dists, strict=True):
                distance = max(dist, 0.0) ** 0.5 if squared_l2 else dist
                if distance <= threshold:
                    pairs.append((distance, row, meta["entity_id"]))
        entities = {e.id: e for e in self._get(user, ids=sorted({p[2] for p in pairs}))} if pairs else {}
        taken: set[str] = set()
        for distance, row, entity_id in sorted(pairs):  # closest pairs first: one region per entity
            entity = entities.get(entity_id)  # None: an orphan vector from an interrupted write
            if entity is not None and result[row] is None and entity_id not in taken:
                result[row] = Match(entity, distance)
                taken.add(entity_id)
        return result

    # ---- writing -------------------------------------------------------------------------------
    def remember(self, user: str, name: str, info: str, category: str, photos: Sequence[ReferencePhoto]) -> Entity:
        """Add an entity, or update the one with the same name (new info replaces, photos add up)."""
        check_user(user)
        name = clean_text(name, "name", max_chars=100)
        info = clean_text(info, "info")
        category = clean_text(category, "category", max_chars=50).lower()
        with write_lock(self.home, self.lock_timeout):
            self._recover()
            existing = self._get(user, {"name_key": _key(name)})
            if existing and existing[0].category != category:
                raise InvalidInputError(
                    f"{name!r} is already remembered as a {existing[0].category}",
                    f"use --category {existing[0].category}, or `rcmu forget {name!r}` first",
                )
            entity = existing[0] if existing else None
            entity_id = entity.id if entity else uuid.uuid4().hex[:12]
            kept = {Path(p).stem for p in entity.photos} if entity else set()  # digests already remembered
            written: dict[str, list[str]] = {"faces": [], "object_images": []}
            files: list[Path] = []
            journal = self.home / "memory.journal"
            try:
                intent = {"entity_id": entity_id, "photos": [hashlib.sha256(p.data).hexdigest()[:16] for p in photos]}
                _atomic_write(journal, json.dumps(intent).encode())
                stored = [self._store_photo(user, entity_id, p, written, files, category) for p in photos]
                new = Entity(
                    id=entity_id,
                    user=user,
                    name=name,
                    category=category,
                    info=info,
                    photos=sorted({*(entity.photos if entity else []), *stored}),
                    **({"created_at": entity.created_at} if entity else {}),
                )
                self._col("entities").upsert(
                    ids=[entity_id],
                    embeddings=self._text.embed([f"{name}. {info}"]),
                    documents=[info],
                    metadatas=[
                        {
                            "user": user,
                            "name": name,
                            "name_key": _key(name),
                            "first_key": _key(name).split(" ")[0],
                            "category": category,
                            "photos": json.dumps(new.photos),
                            "created_at": new.created_at.isoformat(),
                        }
                    ],
                )
            except BaseException:
                for col_name, ids in written.items():
                    added = [i for i in ids if i.rsplit(":", 1)[-1] not in kept]  # an update keeps its old photos
                    if added:
                        self._col(col_name).delete(ids=added)
                for path in files:
                    path.unlink(missing_ok=True)
                raise
            finally:
                journal.unlink(missing_ok=True)
        log.info("remembered %s (%s) for user %s with %d photo(s)", name, entity_id, user, len(photos))
        return new

    def _store_photo(
        self,
        user: str,
        entity_id: str,
        photo: ReferencePhoto,
        written: dict[str, list[str]],
        files: list[Path],
        category: str,
    ) -> str:
        digest = hashlib.sha256(photo.data).hexdigest()[:16]
        vector_id = f"{entity_id}:{digest}"
        target = self.home / "photos" / user / entity_id / f"{digest}{photo.suffix.lower()}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, photo.data)
            files.append(target)
        meta = {"user": user, "entity_id": entity_id, "category": category, "photo": str(target)}
        for col_name, vector in (("faces", photo.face_descriptor), ("object_images", photo.image_embedding)):
            if vector is not None:
                self._col(col_name).upsert(ids=[vector_id], embeddings=[list(vector)], metadatas=[meta])
                written[col_name].append(vector_id)
        return str(target)

    def forget(self, user: str, key: str) -> Entity:
        """Remove an entity, its vectors and its copied photos."""
        entity = self.get(user, key)
        with write_lock(self.home, self.lock_timeout):
            self._col("entities").delete(ids=[entity.id])  # first: from here on nothing can match it
            for col_name in ("faces", "object_images"):
                if col_name != "object_images" or self.image_model:
                    self._col(col_name).delete(where={"entity_id": entity.id})
            shutil.rmtree(self.home / "photos" / user / entity.id, ignore_errors=True)
        log.info("forgot %s (%s) for user %s", entity.name, entity.id, user)
        return entity

    def _recover(self) -> None:
        """Undo the vectors of a write that was killed before its entity row landed."""
        journal = self.home / "memory.journal"
        if not journal.exists():
            return
        try:
            intent = json.loads(journal.read_bytes())
            entity_id, digests = intent["entity_id"], intent["photos"]
        except (ValueError, KeyError):
            journal.unlink(missing_ok=True)
            return
        got = self._col("entities").get(ids=[entity_id], include=["metadatas"])
        kept = json.loads(got["metadatas"][0]["photos"]) if got["ids"] else []
        lost = [d for d in digests if not any(d in Path(p).name for p in kept)]
        orphans = [f"{entity_id}:{d}" for d in lost]
        if orphans:
            log.warning("removing %d vector(s) left by an interrupted write", len(orphans))
            for col_name in ("faces", "object_images"):
                if col_name == "faces" or self.image_model:
                    self._col(col_name).delete(ids=orphans)
            for digest in lost:  # the photo copies too (also a half-written `.part`)
                for path in self.home.glob(f"photos/*/{entity_id}/{digest}*"):
                    path.unlink(missing_ok=True)
            for folder in self.home.glob(f"photos/*/{entity_id}"):
                if not any(folder.iterdir()):
                    folder.rmdir()
        journal.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
