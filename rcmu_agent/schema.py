"""The typed objects that flow through the agent: regions, entities, context entries, answers, and
the photo library's records (index reports, search hits, library answers).

Boxes are pixel `x1,y1,x2,y2` in the original photo; the prompt builder alone converts them to the
model's 0..999 grid, so nothing else has to know about that convention.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, computed_field, field_validator, model_validator

from rcmu_agent.masks import RLE, Box, mask_to_box, to_rle

__all__ = [
    "MAX_PROMPT_CHARS",
    "MAX_REGIONS",
    "MAX_REGION_INFO_CHARS",
    "RLE",
    "Answer",
    "Box",
    "Category",
    "Citation",
    "Cluster",
    "ContextEntry",
    "Entity",
    "ExportReport",
    "ImportReport",
    "IndexReport",
    "LibraryAnswer",
    "MemoryChange",
    "PhotoCitation",
    "PhotoHit",
    "Place",
    "Region",
    "SkippedFile",
    "Source",
    "drop_unseen",
    "normalize_category",
]

Source = Literal["face", "object", "user"]

# ---- caps no caller can pass (issue 20), in one place: the schema, the region readers and the prompt
# builder all enforce these. Constants, not settings: they bound what one request may hold against the
# model's fixed window (RC-Qwen2-VL: 32,768 tokens), which no deployment changes.

MAX_REGIONS = 64
"""Regions per turn. Detection finds a few dozen at most (faces and remembered objects in a crowded
photo) and the model was trained on a handful of entries per image; 64 covers a class photo."""

MAX_REGION_INFO_CHARS = 1000
"""Characters of a caller's region info. The model learned on 2-3 sentences per entry (~130-400
characters); 1,000 leaves room for six or more, and longer text belongs in memory (`remember`, where
the whole of it is kept and only the entries recognised are sent)."""

MAX_PROMPT_CHARS = 64_000
"""Characters of the whole text block after the image. ~16k tokens of English (~25k for box-heavy
text) still leaves the window room for the photo's visual tokens (1,280 at the default budget) and
the answer. It binds before 64 regions of full-length info would (~77k): each cap above stops one kind
of excess, this one their sum, and the sum is also what memory entries and the library's collage add."""

# Characters no name, info or prompt keeps, because a reader cannot see them or they change what is
# seen: C0/C1 controls (tab and line breaks aside: they are whitespace, collapsed by the callers),
# bidi embeddings, overrides, isolates and marks ("Joe" shown as "eoJ"), zero-width spaces and
# joiners, word joiner and invisible operators, the BOM, and tag characters (U+E0000-E007F: text a
# language model reads but a person never sees). Emoji ZWJ sequences fall apart into their emoji, and
# scripts that use ZWNJ/ZWJ for ligatures keep their letters: a small cost for names that cannot hide.
_UNSEEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)


def drop_unseen(text: str) -> str:
    """`text` without the characters of `_UNSEEN`. The one character table: `prompt.clean_text` (every
    text stored or sent to a model) builds on it, and `Entity` applies it to names read back."""
    return _UNSEEN.sub("", text)


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

    @field_validator("info")
    @classmethod
    def _short_info(cls, info: str | None) -> str | None:
        # "problem — fix": the region readers (`regions.region_error`) split it into an error's two parts
        if info is not None and len(info) > MAX_REGION_INFO_CHARS:
            raise ValueError(
                f"info is {len(info)} characters, over the {MAX_REGION_INFO_CHARS}-character limit of a region — "
                "shorten it to a few sentences, or `remember` the longer text and let recognition bring it"
            )
        return info


class Entity(BaseModel):
    """Someone or something the user taught the assistant about."""

    id: str
    user: str
    name: str
    category: str = "person"
    info: str
    photos: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _visible_name(self) -> Entity:
        """The store cleans names when it writes them (`prompt.clean_text`); this catches any written
        before that, so no reader of an entity gets a name that hides characters. Lenient on purpose:
        a name of nothing but invisible characters becomes the id (which `forget` takes), rather than
        an error that would make the whole memory unreadable."""
        if not self.name.isprintable():  # a C-speed check first: listing 100k entities must not slow down
            self.name = " ".join(drop_unseen(self.name).split()) or self.id
        if not self.category.isprintable():
            self.category = " ".join(drop_unseen(self.category).split()) or "object"
        return self


class ContextEntry(BaseModel):
    """A region (or, for memory questions, a remembered entity) together with what is known about it.

    `index` is the `[n]` the prompt gives it. A region nothing is known about (an unknown face) is
    reported but not sent as context; an answer numbers it after the sent ones (`citations.number_regions`),
    so a user can name it ("[3] is Rose"), and None until then.
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


class MemoryChange(BaseModel):
    """A change to memory asked for in the conversation ("[2] is my sister Rose"), as proposed, done or
    declined. What a front end shows before writing: who, which region of the photo (its `[n]` and
    box), the info, and the crop that becomes the reference photo, as a vault id and a small JPEG
    thumbnail (a data URL) — never a path."""

    action: Literal["remember", "update", "forget", "list"]
    name: str | None = None
    category: str | None = None
    info: str | None = None
    region: int | None = None  # the `[n]` of the answer the user saw
    box: Box | None = None  # pixels of the thread's photo
    photo: str | None = None  # the vault id of the photo the region is cut from
    reference: str | None = None  # the vault id of the crop that becomes the reference photo
    thumbnail: str | None = Field(default=None, repr=False)  # data:image/jpeg;base64,… (≤ 160 px)
    entity_id: str | None = None  # the entity updated, forgotten, or (once done) remembered
    existing: bool = False  # remember: the name is already known (photos add up, info replaces)
    status: Literal["proposed", "done", "declined"] = "proposed"


class Answer(BaseModel):
    """What the agent returns: text, resolved citations, and everything that was used to get there."""

    text: str
    citations: list[Citation] = Field(default_factory=list)
    invalid_citations: list[int] = Field(default_factory=list)
    unanswerable: bool = False
    regions: list[ContextEntry] = Field(default_factory=list)
    prompt: str = ""
    context_only: bool = False
    photo: str | None = None  # the vault id of the photo the answer is about (a thread's follow-ups included)
    change: MemoryChange | None = None  # a memory change this turn proposed (awaiting a yes), did or declined
    # where the time went: seconds per stage (decode_s, detect_s, resize_s, vision_s, prefill_s, first_token_s),
    # decode_tokens and tokens_per_s (`rcmu_agent.timings`); a context-only turn stops before the model's
    timings: dict[str, float] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unrecognised(self) -> list[int]:
        """The `[n]` of the regions nobody was recognised at: what a user can name ("[3] is Rose")."""
        return sorted(r.index for r in self.regions if r.index is not None and r.region is not None and r.info is None)

    def summary(self) -> dict[str, Any]:
        """The JSON shape `rcmu ask --json` prints."""
        return {
            "answer": self.text,
            "unanswerable": self.unanswerable,
            "citations": [c.model_dump() for c in self.citations],
            "invalid_citations": self.invalid_citations,
            "regions": [r.summary() for r in self.regions],
            "unrecognised": self.unrecognised,
            "change": self.change.model_dump(mode="json") if self.change else None,
            "context": self.prompt,
            "context_only": self.context_only,
            "timings": self.timings,
        }


# ---- the photo library: what indexing reports, what a search finds, what a library answer cites ----


class Place(BaseModel):
    """Where a photo was taken (EXIF GPS, decimal degrees)."""

    lat: float
    lon: float


class SkippedFile(BaseModel):
    """A file the index left out, and why (unreadable, not an image, too large, a symlink loop...)."""

    path: str
    reason: str


class IndexReport(BaseModel):
    """What one `index_library` run did. Counts are files (paths), except `photos`, the library's total."""

    root: str
    user: str
    added: int = 0  # new content: decoded, faces found, embedded
    unchanged: int = 0  # same size and mtime at the same path (or same hash): nothing read or decoded
    moved: int = 0  # known content at a new path whose old path is gone: path updated, nothing recomputed
    duplicates: int = 0  # known content at a second path that still exists: one photo, both paths kept
    removed: int = 0  # paths that disappeared (a photo is deleted when its last path goes)
    skipped: list[SkippedFile] = Field(default_factory=list)
    photos: int = 0  # photos of this user in the library after the run
    faces: int = 0  # faces detected in the photos added by this run
    seconds: float = 0.0


class PhotoHit(BaseModel):
    """One photo found by a search, with the regions that made it match (for citing).

    Boxes are pixels of the photo as displayed (EXIF orientation applied). `regions[i].info` is the
    name of whoever was recognised there (None for an unknown face); `matched_regions` holds indices
    into `regions` of the people the query asked for.
    """

    id: str
    path: str  # absolute path of the first known copy (the file name alone in a served answer)
    paths: list[str] = Field(default_factory=list)  # every known copy (duplicates)
    taken_at: datetime | None = None
    place: Place | None = None
    people: list[str] = Field(default_factory=list)
    regions: list[Region] = Field(default_factory=list)
    score: float = 1.0  # text similarity when the query had text, else 1.0
    matched_regions: list[int] = Field(default_factory=list)
    context: str = ""  # the photo's region context as text (what text search compares against)
    size: tuple[int, int] = (0, 0)  # width, height


class Cluster(BaseModel):
    """Faces nobody has named yet that look like one person (or a cluster the user has named)."""

    id: int
    size: int
    name: str | None = None
    faces: list[int] = Field(default_factory=list)  # face ids, for `rcmu split`
    sample_paths: list[str] = Field(default_factory=list)
    crops: list[str] = Field(default_factory=list)


class PhotoCitation(BaseModel):
    """A `[n]` of a library answer resolved to the photo and the region (in that photo's pixels)."""

    index: int
    photo_id: str
    path: str
    box: Box | None = None  # None: the citation is the photo as a whole
    name: str | None = None
    category: str = "photo"


class LibraryAnswer(Answer):
    """An answer over several photos: `photo` is the collage the model saw; `photo_citations` map each
    `[n]` back to the photo and region it came from; `photos` are the retrieved photos, in tile order."""

    photos: list[PhotoHit] = Field(default_factory=list)
    photo_citations: list[PhotoCitation] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = super().summary()
        data["photos"] = [{"id": p.id, "path": p.path, "people": p.people} for p in self.photos]
        data["photo_citations"] = [c.model_dump() for c in self.photo_citations]
        return data


# ---- carrying memory: export and import ----


class ExportReport(BaseModel):
    """What `rcmu export` wrote."""

    path: str
    users: dict[str, int]  # user → entities exported
    photos: int
    missing_photos: list[str] = Field(default_factory=list)  # reference copies gone from the home
    library_photos: int | None = None
    seconds: float = 0.0


class ImportReport(BaseModel):
    """What `rcmu import` did with each row."""

    source: str
    user: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # already in memory exactly as given (a rerun skips these)
    failed: list[str] = Field(default_factory=list)  # `FILE:LINE: reason`
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """False when there was something to load and nothing of it could be."""
        return not self.failed or self.added + self.updated + self.unchanged > 0
