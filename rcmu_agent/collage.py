"""Questions over the photo library (multimodal RAG): the retrieved photos shown as one collage.

RC-Qwen2-VL answers about one image with numbered region context. So the top photos are laid out on
a grid, every known region is mapped into the grid's pixels, and each photo also gets an entry of its
own (file, date, place) covering its tile: the standard prompt (`build_prompt`) applies unchanged, and
each `[n]` of the answer resolves to a photo and, when it is a face or object, the region in it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rcmu_agent.errors import NotFoundError
from rcmu_agent.schema import Box, ContextEntry, PhotoCitation, PhotoHit, Region

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.images import PhotoCache
    from rcmu_agent.memory import MemoryStore

__all__ = ["Tile", "build_collage", "cite_photos", "collage_bytes", "library_context"]

BACKGROUND = (255, 255, 255)


class Tile:
    """Where one photo sits in the collage: offset and scale from its pixels to the collage's."""

    def __init__(self, photo: PhotoHit, left: int, top: int, scale: float, width: int, height: int) -> None:
        self.photo, self.left, self.top, self.scale = photo, left, top, scale
        self.width, self.height = width, height

    @property
    def box(self) -> Box:
        return (float(self.left), float(self.top), float(self.left + self.width), float(self.top + self.height))

    def to_collage(self, box: Box) -> Box:
        x1, y1, x2, y2 = box
        s = self.scale
        return (self.left + x1 * s, self.top + y1 * s, self.left + x2 * s, self.top + y2 * s)


def build_collage(
    images: Sequence[Image.Image], photos: Sequence[PhotoHit], cell: int
) -> tuple[Image.Image, list[Tile]]:
    """A near-square grid of `cell`-pixel cells, each photo scaled to fit and centred in its cell."""
    from PIL import Image

    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    canvas = Image.new("RGB", (columns * cell, rows * cell), BACKGROUND)
    tiles = []
    for n, (image, photo) in enumerate(zip(images, photos, strict=True)):
        scale = min(cell / image.width, cell / image.height)
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        left = (n % columns) * cell + (cell - width) // 2
        top = (n // columns) * cell + (cell - height) // 2
        canvas.paste(image.resize((width, height), Image.Resampling.BICUBIC), (left, top))
        tiles.append(Tile(photo, left, top, scale, width, height))
    return canvas, tiles


def collage_bytes(canvas: Image.Image) -> bytes:
    """PNG (lossless), for the asking user's vault: a repeated question stores nothing new."""
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _when_where(photo: PhotoHit) -> str:
    name = Path(photo.path).name or photo.id
    parts = [name]
    if photo.taken_at is not None:
        parts.append(f"taken {photo.taken_at:%Y-%m-%d %H:%M}")
    if photo.place is not None:
        parts.append(f"at {photo.place.lat:.4f},{photo.place.lon:.4f}")
    return ", ".join(parts)


def library_context(
    photos: Sequence[PhotoHit], images: PhotoCache, memory: MemoryStore, user: str, cell: int
) -> tuple[Image.Image, list[ContextEntry], list[PhotoCitation]]:
    """The collage (`cell`-pixel cells), its context entries (unnumbered) and, aligned with them, what
    each entry cites; what the memory knows about each person shown goes into their entry."""
    canvas, tiles = build_collage([images.load(p.path) for p in photos], photos, cell)
    infos = _entity_infos(memory, user, photos)
    entries: list[ContextEntry] = []
    cites: list[PhotoCitation] = []
    for n, tile in enumerate(tiles, start=1):
        photo, label = tile.photo, _when_where(tile.photo)
        shows = f"; it shows {', '.join(photo.people)}" if photo.people else ""
        entries.append(ContextEntry(region=Region(box=tile.box, category="photo"), info=f"Photo {n}: {label}{shows}"))
        cites.append(PhotoCitation(index=0, photo_id=photo.id, path=photo.path))
        for region in photo.regions:
            if not region.info:
                continue  # an unknown face: reported with the photo, not sent as context
            about = infos.get(region.info, region.info)
            entries.append(
                ContextEntry(
                    region=Region(box=tile.to_collage(region.box), category=region.category, source=region.source),
                    name=region.info,
                    info=f"{about.rstrip('. ')} (in photo {n}: {label})",
                )
            )
            cites.append(
                PhotoCitation(
                    index=0,
                    photo_id=photo.id,
                    path=photo.path,
                    box=region.box,
                    name=region.info,
                    category=region.category,
                )
            )
    return canvas, entries, cites


def _entity_infos(memory: MemoryStore, user: str, photos: Sequence[PhotoHit]) -> dict[str, str]:
    """What memory knows about each person shown, by name."""
    names = sorted({r.info for p in photos for r in p.regions if r.info})
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = memory.get(user, name).info
        except NotFoundError:
            continue
    return out


def cite_photos(
    entries: Sequence[ContextEntry], refs: Sequence[PhotoCitation], numbers: Sequence[int]
) -> list[PhotoCitation]:
    """The (photo, region) behind each cited `[n]` (entries and refs are aligned, entries numbered)."""
    by_index = {e.index: r for e, r in zip(entries, refs, strict=True) if e.index is not None}
    return [by_index[n].model_copy(update={"index": n}) for n in numbers if n in by_index]
