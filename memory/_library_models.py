"""The photo library's public records: what indexing reports and what a search returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from rcmu_agent.schema import Answer, Box, Region

__all__ = ["Cluster", "IndexReport", "LibraryAnswer", "PhotoCitation", "PhotoHit", "Place", "SkippedFile"]


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
    path: str  # absolute path of the first known copy
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
    """An answer over several photos: `image` is the collage the model saw; `photo_citations` map each
    `[n]` back to the photo and region it came from; `photos` are the retrieved photos, in tile order."""

    photos: list[PhotoHit] = Field(default_factory=list)
    photo_citations: list[PhotoCitation] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = super().summary()
        data["photos"] = [{"id": p.id, "path": p.path, "people": p.people} for p in self.photos]
        data["photo_citations"] = [c.model_dump() for c in self.photo_citations]
        return data
