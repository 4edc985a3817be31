"""When and where a photo was taken, from its EXIF block (Pillow only; no pixels are decoded)."""

from __future__ import annotations

import io
import logging
from datetime import datetime
from typing import Any

__all__ = ["read_exif"]

log = logging.getLogger(__name__)

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME_ORIGINAL, DATETIME_DIGITIZED, DATETIME = 0x9003, 0x9004, 0x0132


def read_exif(data: bytes) -> tuple[datetime | None, tuple[float, float] | None]:
    """(taken_at, (lat, lon)); either is None when missing or malformed. Never raises on bad EXIF:
    a photo with a broken EXIF block is still a photo."""
    from rcmu_agent.images import open_image

    try:
        with open_image(io.BytesIO(data)) as img:
            exif = img.getexif()
            sub = exif.get_ifd(EXIF_IFD)
            gps = exif.get_ifd(GPS_IFD)
    except Exception:  # not an image at all: the decode step reports it properly
        return None, None
    raw = sub.get(DATETIME_ORIGINAL) or sub.get(DATETIME_DIGITIZED) or exif.get(DATETIME)
    return _parse_time(raw), _parse_gps(gps)


def _parse_time(raw: Any) -> datetime | None:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "ignore")
    if not isinstance(raw, str):
        return None
    text = raw.strip().rstrip("\x00")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    log.debug("unreadable EXIF date %r", raw)
    return None


def _degrees(value: Any) -> float:
    d, m, s = (float(v) for v in value)
    return d + m / 60.0 + s / 3600.0


def _parse_gps(gps: Any) -> tuple[float, float] | None:
    try:
        lat, lon = _degrees(gps[2]), _degrees(gps[4])
        if str(gps.get(1, "N")).upper().startswith("S"):
            lat = -lat
        if str(gps.get(3, "E")).upper().startswith("W"):
            lon = -lon
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or lat != lat or lon != lon:
        return None
    return round(lat, 6), round(lon, 6)
