"""Draw regions and names on a photo, for `rcmu ask --annotate` and for eyeballing results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rcmu_agent.files import atomic_write
from rcmu_agent.schema import ContextEntry

__all__ = ["annotate", "label", "save_annotated", "shrink"]

_KNOWN, _UNKNOWN = (46, 204, 113), (231, 76, 60)


def label(entry: ContextEntry) -> str:
    """`[n] name` for a cited entry; the category for a caller's described box; `unknown <category>`."""
    number = f"[{entry.index}] " if entry.index else ""
    known = entry.info is not None
    return number + (entry.name or (entry.category if known else f"unknown {entry.category}"))


def shrink(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    """`image` with its longer side at most `side` pixels, and the scale boxes must be multiplied by.

    What a page or a chat shows need not carry a 12 MP photo; shrinking before drawing keeps the
    drawing cheap and the labels readable at the size shown."""
    scale = min(1.0, side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return image, scale


def annotate(image: Image.Image, entries: Sequence[ContextEntry], *, max_side: int | None = None) -> Image.Image:
    """A copy of `image` with each box outlined: green and labelled `[n] name` when known, red when not;
    shrunk first to `max_side` pixels (boxes with it) when given."""
    scale = 1.0
    if max_side is not None:
        image, scale = shrink(image, max_side)
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(out.size) / 45)))
    for entry in entries:
        if entry.box is None:
            continue
        color = _KNOWN if entry.info is not None else _UNKNOWN
        text = label(entry)
        x1, y1, x2, y2 = (v * scale for v in entry.box)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        lift = bottom - top + 2 * width
        y = y1 - lift if y1 - lift >= 0 else y2
        draw.rectangle((x1, y, x1 + right - left + 2 * width, y + lift), fill=color)
        draw.text((x1 + width, y + width - (top - y1)), text, fill=(255, 255, 255), font=font)
    return out


def save_annotated(image: Image.Image, entries: Sequence[ContextEntry], path: str | Path) -> Path:
    """Write atomically, so an interrupted run never leaves half a PNG behind."""
    drawn = annotate(image, entries)
    kind = "JPEG" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "PNG"
    return atomic_write(path, lambda handle: drawn.save(handle, format=kind))
