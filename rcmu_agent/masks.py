"""Boxes and masks as data: the box type, COCO RLE masks and their codec, a mask's box.

Masks are kept as COCO RLE because it is compact, JSON-friendly and what segmentation tools emit;
the codec is small enough to own, so pycocotools stays optional. The lowest module of the package:
the schema's `Region` validates its mask with it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from rcmu_agent.errors import InvalidInputError

__all__ = ["RLE", "Box", "decode_rle", "encode_rle", "mask_to_box", "to_rle"]

Box = tuple[float, float, float, float]
"""Pixel corners `x1, y1, x2, y2` in the original photo (right and bottom edges exclusive)."""


class RLE(BaseModel):
    """A binary mask as COCO run-length encoding (column-major; counts compressed or not)."""

    model_config = ConfigDict(frozen=True)

    size: tuple[int, int]  # (height, width)
    counts: str | list[int]


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
    """Accept an RLE, a COCO-style dict, a numpy array, a PNG `Path` or PNG bytes.

    Text is never a file: a mask that came as JSON (the graph's `regions`, a tool argument) is COCO RLE
    or nothing, so a caller cannot make the server open a path. A `Path` comes only from Python code,
    the machine's own user, and is still read once through the door (a FIFO never hangs the call)."""
    if isinstance(mask, str):
        raise InvalidInputError(
            "a mask given as text is not read as a file", 'give the mask as COCO RLE: {"size": [h, w], "counts": ...}'
        )
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
    if isinstance(mask, Path | bytes):
        from PIL import UnidentifiedImageError

        from rcmu_agent.door import read_photo_file
        from rcmu_agent.images import open_image

        data = mask if isinstance(mask, bytes) else read_photo_file(mask, [Path("/")]).data
        try:
            with open_image(io.BytesIO(data)) as img:
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
