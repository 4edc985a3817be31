"""Helpers for the photo-library tests: building a messy library from the shared photos.

Imported by name (the conftest puts this folder on sys.path); the name is unique across the suite."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from rcmu_agent import Settings

NO_MODELS: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}


def with_exif(source: Path, target: Path, taken: datetime | None, gps: tuple[float, float] | None = None) -> Path:
    """A copy re-encoded with an EXIF date (and GPS place) written by Pillow."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as img:
        exif = Image.Exif()
        if taken is not None:
            exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
        if gps is not None:
            lat, lon = gps
            exif.get_ifd(0x8825).update(
                {1: "N" if lat >= 0 else "S", 2: _dms(abs(lat)), 3: "E" if lon >= 0 else "W", 4: _dms(abs(lon))}
            )
        img.convert("RGB").save(target, format="JPEG", quality=92, exif=exif)
    return target


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)


def mirrored(source: Path, target: Path) -> Path:
    """The same person in new bytes: a left-right mirror of a photo."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as img:
        ImageOps.mirror(img.convert("RGB")).save(target, format="JPEG", quality=92)
    return target


def copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def settings(home: Path, **extra: Any) -> Settings:
    return Settings(home=home, **{**NO_MODELS, **extra})
