"""Regions as callers give them: boxes checked against the photo, and the CLI's region specs."""

from __future__ import annotations

from pydantic import ValidationError

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.masks import Box
from rcmu_agent.schema import Region, Source

__all__ = ["check_box", "parse_region_spec"]


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
