"""Draw regions and names on a photo, for `rcmu ask --annotate` and for eyeballing results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rcmu_agent.files import atomic_write
from rcmu_agent.schema import ContextEntry

__all__ = ["annotate", "save_annotated"]

_KNOWN, _UNKNOWN = (46, 204, 113), (231, 76, 60)


def annotate(image: Image.Image, entries: Sequence[ContextEntry]) -> Image.Image:
    """A copy of `image` with each box outlined: green and labelled `[n] name` when known, red when not."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(out.size) / 45)))
    for entry in entries:
        if entry.box is None:
            continue
        known = entry.info is not None
        color = _KNOWN if known else _UNKNOWN
        label = f"[{entry.index}] " if entry.index else ""
        label += entry.name or (entry.category if known else f"unknown {entry.category}")
        x1, y1, x2, y2 = entry.box
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        lift = bottom - top + 2 * width
        y = y1 - lift if y1 - lift >= 0 else y2
        draw.rectangle((x1, y, x1 + right - left + 2 * width, y + lift), fill=color)
        draw.text((x1 + width, y + width - (top - y1)), label, fill=(255, 255, 255), font=font)
    return out


def save_annotated(image: Image.Image, entries: Sequence[ContextEntry], path: str | Path) -> Path:
    """Write atomically, so an interrupted run never leaves half a PNG behind."""
    drawn = annotate(image, entries)
    kind = "JPEG" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "PNG"
    return atomic_write(path, lambda handle: drawn.save(handle, format=kind))
