"""Writing files so that a reader — or the next run after a kill — never sees half of one.

Every file the project writes whole (annotated photos, reports, sidecar JSON, reference photos,
collages, crops) goes through `atomic_write`: the bytes land in a sibling temp file that is then
renamed over the target, and a rename within one folder is atomic on POSIX and Windows.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "save_by_content"]


def atomic_write(path: Path | str, data: bytes | str | Callable[[BinaryIO], object]) -> Path:
    """Write `data` (bytes, text as UTF-8, or a function that writes into an open binary file) to
    `path` in one step; the folder is created if needed. The temp name is unique, so two writers of
    the same target never share a temp file, and the one renamed last wins whole."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with tmp.open("wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def save_by_content(data: bytes, folder: Path, suffix: str) -> Path:
    """Keep bytes under `folder`, named by their content: saving the same photo (or collage) again
    writes nothing, and a reader never sees half a file."""
    target = folder / f"{hashlib.sha256(data).hexdigest()[:20]}{suffix}"
    if not target.exists():
        atomic_write(target, data)
    return target
