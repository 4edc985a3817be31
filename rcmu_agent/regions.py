"""Box and mask maths: masks in any common form to RLE and boxes, box validation, region specs.

Masks are kept as COCO RLE because it is compact, JSON-friendly and what segmentation tools emit;
the codec is small enough to own, so pycocotools stays optional.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.schema import RLE, Box, Region, Source

__all__ = [
    "check_box",
    "decode_rle",
    "encode_rle",
    "mask_to_box",
    "parse_region_spec",
    "to_rle",
]


MAX_MASK_PIXELS = 80_000_000  # as RCMU_MAX_IMAGE_PIXELS by default


def _runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a flat 0/1 array, starting with a (possibly empty) run of zeros."""
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(edges).tolist()
    return ([0, *runs] if flat.size and flat[0] else runs) or [0]


def _compress(counts: list[int]) -> str:
    out = bytearray()
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            chunk = x & 0x1F
            x >>= 5
            more = x != -1 if chunk & 0x10 else x != 0
            out.append((chunk | (0x20 if more else 0)) + 48)
            if not more:
                break
    return out.decode("ascii")


def _decompress(text: str) -> list[int]:
    counts: list[int] = []
    pos = 0
    data = text.encode("ascii")
    while pos < len(data):
        x = shift = 0
        while True:
            chunk = data[pos] - 48
            if not 0 <= chunk < 64:
                raise ValueError(f"character {chr(data[pos])!r} is not in COCO's alphabet '0'..'o'")
            x |= (chunk & 0x1F) << shift
            shift += 5
            pos += 1
            if not chunk & 0x20:
                if chunk & 0x10:
                    x |= -1 << shift
                break
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    return counts


def encode_rle(mask: np.ndarray) -> RLE:
    """A 2-D boolean mask as compressed COCO RLE."""
    if mask.ndim != 2:
        raise InvalidInputError(f"mask must be 2-D (height, width), got shape {mask.shape}")
    flat = np.asfortranarray(mask.astype(bool)).ravel(order="F")
    return RLE(size=(int(mask.shape[0]), int(mask.shape[1])), counts=_compress(_runs(flat)))


def decode_rle(rle: RLE) -> np.ndarray:
    """A COCO RLE (compressed or not) as a boolean (height, width) array."""
    height, width = rle.size
    if height * width > MAX_MASK_PIXELS:  # the counts of a few bytes could otherwise claim gigabytes
        raise InvalidInputError(
            f"mask is {height}x{width}, over the {MAX_MASK_PIXELS / 1e6:.0f} MP limit", "give the photo's own size"
        )
    try:
        counts = _decompress(rle.counts) if isinstance(rle.counts, str) else list(rle.counts)
    except (IndexError, ValueError) as exc:  # a truncated counts string, or a character outside the alphabet
        raise InvalidInputError(
            f"RLE counts string is malformed ({exc})", "give counts exactly as pycocotools produced them"
        ) from exc
    if sum(counts) != height * width or any(c < 0 for c in counts):
        raise InvalidInputError(
            f"RLE counts cover {sum(counts)} pixels but size {height}x{width} has {height * width}",
            "check the mask's `size` is [height, width] and its counts belong to it",
        )
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((width, height)).T


def to_rle(mask: Any) -> RLE:
    """Accept an RLE, a COCO-style dict, a numpy array, a PNG path or PNG bytes."""
    if isinstance(mask, RLE):
        return mask
    if isinstance(mask, Mapping):
        try:
            return RLE(size=tuple(mask["size"]), counts=mask["counts"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"mask dict is not COCO RLE ({exc})", 'give {"size": [h, w], "counts": ...}'
            ) from exc
    if isinstance(mask, np.ndarray):
        return encode_rle(mask > 0)
    if isinstance(mask, str | Path | bytes):
        from PIL import Image, UnidentifiedImageError

        try:
            source = io.BytesIO(mask) if isinstance(mask, bytes) else Path(mask)
            with Image.open(source) as img:
                return encode_rle(np.asarray(img.convert("L")) > 0)
        except (OSError, UnidentifiedImageError, ValueError) as exc:  # the decoder's text may quote the file
            raise InvalidInputError(
                f"cannot read mask image ({type(exc).__name__})", "give a PNG with 0 outside the region"
            ) from None
    raise InvalidInputError(f"unsupported mask type {type(mask).__name__}", "give a PNG, numpy array or COCO RLE")


def mask_to_box(rle: RLE) -> Box:
    """Tight pixel box around the mask (right/bottom edges exclusive)."""
    mask = decode_rle(rle)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise InvalidInputError("mask is empty (no pixel set)", "give a mask that covers the region")
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def check_box(box: Box, size: tuple[int, int], *, strict: bool, tolerance: float = 1.0) -> Box:
    """Fit a box to an image of `size` (width, height).

    Detectors routinely return boxes that poke past the border, so `strict=False` clamps them. A box a
    caller typed is checked (`strict=True`): one that leaves the image is a mistake (often xywh or
    0..1000 coordinates) and gets an error rather than a silent clamp.
    """
    width, height = size
    x1, y1, x2, y2 = box
    if strict:
        fits = -tolerance <= x1 and -tolerance <= y1 and x2 <= width + tolerance and y2 <= height + tolerance
        if not fits:
            raise InvalidInputError(
                f"box ({x1:g},{y1:g},{x2:g},{y2:g}) lies outside the {width}x{height} image",
                "give pixel corners x1,y1,x2,y2 inside the photo (not x,y,w,h nor 0..1000 coordinates)",
            )
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if not (cx2 - cx1 >= 1 and cy2 - cy1 >= 1):  # written so that NaN coordinates fail too
        raise InvalidInputError(
            f"box ({x1:g},{y1:g},{x2:g},{y2:g}) has no area inside the {width}x{height} image",
            "give a box that covers part of the photo",
        )
    return (cx1, cy1, cx2, cy2)


def parse_region_spec(spec: str, source: Source = "user") -> Region:
    """Parse `x1,y1,x2,y2[:category[:info]]`, the CLI's `--region` form."""
    coords, _, rest = spec.partition(":")
    category, _, info = rest.partition(":")
    try:
        values = [float(v) for v in coords.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InvalidInputError(
            f"region {spec!r} does not start with four numbers",
            "write it as x1,y1,x2,y2[:category[:info]], e.g. 120,40,380,420:dog:Bella, 2 years old",
        )
    try:
        return Region(
            box=(values[0], values[1], values[2], values[3]),
            category=category.strip() or "object",
            source=source,
            info=info.strip() or None,
        )
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidInputError(f"region {spec!r}: {reason}", "fix the coordinates") from exc
