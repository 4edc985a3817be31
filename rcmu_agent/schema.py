"""The typed objects that flow through the agent: regions, entities, context entries, answers.

Boxes are pixel `x1,y1,x2,y2` in the original photo; the prompt builder alone converts them to the
model's 0..999 grid, so nothing else has to know about that convention.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "RLE",
    "Answer",
    "Box",
    "Category",
    "Citation",
    "ContextEntry",
    "Entity",
    "Region",
    "Source",
    "normalize_category",
]

Box = tuple[float, float, float, float]
Source = Literal["face", "object", "user"]


def normalize_category(value: str) -> str:
    """One spelling per category ("Golden  Retriever" → "golden retriever"), so memory, detection
    queries and training data agree on what is the same kind of thing."""
    return " ".join(str(value).split()).lower()


def _category(value: str) -> str:
    value = normalize_category(value)
    if not value:
        raise ValueError("category is empty")
    return value


Category = Annotated[str, AfterValidator(_category)]
"""A normalised, non-empty category, for any model field that holds one."""


class RLE(BaseModel):
    """A binary mask as COCO run-length encoding (column-major; counts compressed or not)."""

    model_config = ConfigDict(frozen=True)

    size: tuple[int, int]  # (height, width)
    counts: str | list[int]


def _agrees(given: Any, derived: Box, tolerance: float = 1.0) -> bool:
    """Is a caller's box the mask's box, give or take a pixel (inclusive vs exclusive edges)?"""
    try:
        return len(given) == 4 and all(abs(float(g) - d) <= tolerance for g, d in zip(given, derived, strict=True))
    except (TypeError, ValueError):
        return False


class Region(BaseModel):
    """Where something is in the photo, and who found it there.

    A mask, when given, is the source of truth: the box is derived from it (any box passed alongside
    must agree with it). `descriptor` holds the face descriptor or image embedding that detection
    computed, so recognition never has to look at the pixels again.
    """

    box: Box
    mask: RLE | None = None
    category: Category = "object"
    score: float | None = None
    source: Source = "user"
    info: str | None = None  # caller-given context; skips recognition
    descriptor: list[float] | None = Field(default=None, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _box_from_mask(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mask") is not None:
            from rcmu_agent.regions import mask_to_box, to_rle

            rle = to_rle(data["mask"])
            derived, given = mask_to_box(rle), data.get("box")
            if given is not None and not _agrees(given, derived):
                raise ValueError(
                    f"box {given!r} does not match its mask, whose box is "
                    f"({derived[0]:g},{derived[1]:g},{derived[2]:g},{derived[3]:g}); leave the box out"
                )
            data = {**data, "mask": rle, "box": derived}
        return data

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: Box) -> Box:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(v == v and abs(v) != float("inf") for v in (x1, y1, x2, y2)):
            raise ValueError(f"box {box} has a non-finite coordinate")
        if x2 <= x1 or y2 <= y1:
            raise ValueError(
                f"box ({x1:g},{y1:g},{x2:g},{y2:g}) is empty or inverted: expected x1<x2 and y1<y2 "
                "(pixel corners x1,y1,x2,y2, not x,y,width,height)"
            )
        return (x1, y1, x2, y2)


class Entity(BaseModel):
    """Someone or something the user taught the assistant about."""

    id: str
    user: str
    name: str
    category: str = "person"
    info: str
    photos: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class ContextEntry(BaseModel):
    """A region (or, for memory questions, a remembered entity) together with what is known about it.

    `index` is the `[n]` the prompt gives it; None when nothing is known (an unknown face), in which
    case the region is reported but not sent as context.
    """

    region: Region | None = None
    category: str = ""
    index: int | None = None
    entity_id: str | None = None
    name: str | None = None
    info: str | None = None
    distance: float | None = None  # to the nearest reference, when recognised

    @model_validator(mode="after")
    def _category_from_region(self) -> ContextEntry:
        if not self.category:
            if self.region is None:
                raise ValueError("a context entry needs a region or a category")
            self.category = self.region.category
        return self

    @property
    def box(self) -> Box | None:
        return self.region.box if self.region else None

    def summary(self) -> dict[str, Any]:
        """The JSON shape `rcmu ask --json` prints for a region."""
        region = self.region
        return {
            "index": self.index,
            "box": [round(v, 1) for v in region.box] if region else None,
            "category": self.category,
            "name": self.name,
            "entity_id": self.entity_id,
            "source": region.source if region else "memory",
            "score": region.score if region else None,
            "distance": None if self.distance is None else round(self.distance, 4),
        }


class Citation(BaseModel):
    """One `[n]` in an answer, resolved to the context entry it points at (None when out of range)."""

    index: int
    entity_id: str | None = None
    name: str | None = None
    box: Box | None = None
    valid: bool = True


class Answer(BaseModel):
    """What the agent returns: text, resolved citations, and everything that was used to get there."""

    text: str
    citations: list[Citation] = Field(default_factory=list)
    invalid_citations: list[int] = Field(default_factory=list)
    unanswerable: bool = False
    regions: list[ContextEntry] = Field(default_factory=list)
    prompt: str = ""
    context_only: bool = False
    image: str | None = None  # the photo the answer is about (a thread's follow-ups included)

    def summary(self) -> dict[str, Any]:
        """The JSON shape `rcmu ask --json` prints."""
        return {
            "answer": self.text,
            "unanswerable": self.unanswerable,
            "citations": [c.model_dump() for c in self.citations],
            "invalid_citations": self.invalid_citations,
            "regions": [r.summary() for r in self.regions],
            "context": self.prompt,
            "context_only": self.context_only,
        }
