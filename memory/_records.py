"""Records the memory stores, and the small pure helpers that shape them (ids, keys, stamps, files)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.schema import Entity

__all__ = ["Match", "ReferencePhoto", "Teaching"]

ENTITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # also a folder name under photos/<user>/
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def check_entity_id(entity_id: str) -> str:
    if not isinstance(entity_id, str) or not ENTITY_ID.match(entity_id):
        raise InvalidInputError(
            f"entity id {entity_id!r} is not valid", "use 1-64 letters, digits, '_' or '-', starting alphanumeric"
        )
    return entity_id


def name_key(name: str) -> str:
    return " ".join(w.removesuffix("'s").removesuffix("’s") for w in WORD.findall(name.lower()))


@dataclass(frozen=True)
class ReferencePhoto:
    """One reference photo with the vector recognition will compare against."""

    data: bytes
    suffix: str
    face_descriptor: Sequence[float] | None = None
    image_embedding: Sequence[float] | None = None


@dataclass(frozen=True)
class Teaching:
    """One entity to remember: what `rcmu remember` is given, after its photos were described."""

    name: str
    info: str
    category: str = "person"
    photos: Sequence[ReferencePhoto] = ()
    # an import carries the entity's identity across homes: its id (kept unless another user holds it)
    # and when it was first taught
    entity_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Match:
    entity: Entity
    distance: float  # faces: Euclidean; objects: 1 - cosine


def new_stamp() -> str:
    """A new version stamp for a user's memory: cached reference vectors older than it are reloaded."""
    return uuid.uuid4().hex


def photo_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def chunked(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def entity_meta(e: Entity) -> dict[str, Any]:
    key = name_key(e.name)
    return {
        "user": e.user,
        "name": e.name,
        "name_key": key,
        "first_key": key.split(" ")[0],
        "category": e.category,
        "photos": json.dumps(e.photos),
        "created_at": e.created_at.isoformat(),
    }
