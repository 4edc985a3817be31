"""Listing a library folder safely: photo files only, symlink loops and escapes refused, not followed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from rcmu_agent.images import PHOTO_SUFFIXES

__all__ = ["PHOTO_SUFFIXES", "walk_library"]


def walk_library(root: Path) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each photo file under `root`; (path, reason) for each entry refused.

    Hidden entries (dot-files, `.thumbnails`) are ignored. A symlink is followed only when it resolves
    inside `root`; a folder is entered once (by its real path), so a link back to an ancestor is a loop.
    Paths are yielded sorted, so runs are reproducible and a resumed run meets files in the same order.
    """
    real_root = root.resolve()
    seen: set[Path] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in seen:
            yield folder, "symlink loop: this folder was already listed"
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield folder, f"unreadable folder ({exc.strerror or exc})"
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    yield path, "symlink loop or dangling symlink: not followed"
                    continue
                if not target.is_relative_to(real_root):
                    yield path, f"symlink to {target}, outside the library: not followed"
                    continue
            try:
                is_dir = entry.is_dir()
                is_file = entry.is_file()
            except OSError as exc:
                yield path, f"unreadable ({exc.strerror or exc})"
                continue
            if is_dir:
                subfolders.append(path)
            elif not is_file:
                continue  # sockets, fifos, devices
            elif path.suffix.lower() not in PHOTO_SUFFIXES:
                yield path, "not a photo file type"
            else:
                yield path, None
        stack.extend(reversed(subfolders))
