"""Regions as callers give them: how many a turn may hold, boxes checked against the photo, the
CLI's region specs, and a region's validation error as a one-line `problem — fix`."""

from __future__ import annotations

from collections.abc import Sized

from pydantic import ValidationError

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.masks import Box
from rcmu_agent.schema import MAX_REGIONS, Region, Source

__all__ = ["check_box", "check_region_count", "parse_region_spec", "region_error"]


def check_region_count(regions: Sized) -> None:
    """Refuse a turn with more than `MAX_REGIONS` regions, before any of them is validated: 5,000 would
    otherwise each be checked, recognised and written into a megabyte of prompt."""
    if len(regions) > MAX_REGIONS:
        raise InvalidInputError(
            f"{len(regions)} regions were given, over the limit of {MAX_REGIONS} per question",
            f"give at most {MAX_REGIONS} regions (the ones the question is about), or none to detect them",
        )


def region_error(where: str, exc: ValidationError, fix: str, *, located: bool = True) -> InvalidInputError:
    """A region's first validation error as `where[.field]: problem — fix`. A validator whose message
    carries its own fix (`problem — fix`, e.g. an info over the length limit) keeps it; others get `fix`."""
    error = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]) if located else ""
    problem, _, own_fix = str(error["msg"]).removeprefix("Value error, ").partition(" — ")
    return InvalidInputError(f"{where}{loc}: {problem}", own_fix or fix)


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
        shown = spec if len(spec) <= 80 else spec[:60] + "…"  # a 5,000-character info is not echoed back
        raise region_error(f"region {shown!r}", exc, "fix the coordinates", located=False) from exc
