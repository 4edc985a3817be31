"""Which photo paths one caller may read: the allowed folders, minus the rcmu home.

`rcmu_agent.door.read_photo_file` is the door for files; this adds the home rule every model-facing
entry needs (the LangChain tools, and through them MCP and the web app; the graph's message interface
as a server runs it): nothing under `RCMU_HOME` — other users' vaults and reference photos, the
databases — is read by path, even when an allowed folder contains the home, and the door checks that
on the file it opened. Refusals are the door's own "outside the allowed folders" sentence, and say
nothing about what the home holds. A caller with a `home` is a stranger, so hard-linked files are
refused too (a hard link is the one way a file in an allowed folder can be a stored photo).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rcmu_agent.door import SYSTEM_TREES, Inbound, read_photo_file
from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.settings import Settings

__all__ = ["PhotoAccess"]


@dataclass(frozen=True)
class PhotoAccess:
    """What a caller may read by path: files under `roots`, except the rcmu `home`, where only
    `own` (the caller's reference photos) is readable."""

    roots: Sequence[Path] = ()
    home: Path | None = None
    own: Path | None = None
    max_bytes: int = 50 << 20

    @classmethod
    def for_user(cls, settings: Settings, user: str) -> PhotoAccess:
        """`RCMU_ALLOWED_ROOTS` with `{user}` as `user`, minus the home but for `user`'s own photos."""
        return cls(
            roots=settings.roots_for(user),
            home=settings.home,
            own=settings.home / "photos" / user,
            max_bytes=settings.max_image_bytes,
        )

    def holds(self, text: str) -> bool:
        """Whether `text`, read as a path, names a place inside a root (decided without the disk)."""
        path = _lexical(text)
        return path is not None and any(path.is_relative_to(r) for r in map(_lexical, self.roots) if r is not None)

    def read(self, path: Path | str) -> Inbound:
        """The photo file at `path`, read once through the door; never anything under the home."""
        deny = (self.home,) if self.home is not None else ()
        return read_photo_file(path, self.roots, deny=deny, max_bytes=self.max_bytes, single_link=bool(deny))

    def folder(self, path: Path | str) -> Path:
        """A folder whose photos may be indexed for this caller: the photo rule, for a whole tree.

        Inside a root (by text first, then with symlinks resolved), not under the home but for `own`, and
        not holding the home either — walking it would reach other users' photos and uploads. A refusal
        is one sentence that says nothing about what lies outside or what the home holds.
        """
        text = os.fspath(path).strip()
        shown = repr(text if len(text) <= 120 else text[:117] + "...")
        outside = InvalidInputError(f"folder {shown} is outside the allowed folders", "pick a folder inside them")
        lexical = _lexical(text) if text else None
        if lexical is None or not self.holds(text) or self._private(lexical, real=False):
            raise outside  # decided without touching the disk
        real = Path(os.path.realpath(lexical))
        roots = [Path(os.path.realpath(r)) for r in self.roots]
        if not any(real.is_relative_to(r) for r in roots) or self._private(real, real=True):
            raise outside
        if any(real.is_relative_to(tree) for tree in SYSTEM_TREES):
            raise outside
        if self.home is not None and Path(os.path.realpath(self.home)).is_relative_to(real):
            raise InvalidInputError(
                f"folder {shown} holds the rcmu data folder", "pick a folder of photos inside it, not around it"
            )
        if not real.is_dir():
            raise NotFoundError(f"folder {shown} is not a folder here", "check the path")
        return real

    def _private(self, path: Path | None, *, real: bool) -> bool:
        """Under the rcmu home, and not among the user's own reference photos."""
        if self.home is None or path is None:
            return False
        norm = (lambda p: Path(os.path.realpath(p))) if real else _lexical
        home, own = norm(self.home), norm(self.own) if self.own is not None else None
        if home is None:
            return False
        return path.is_relative_to(home) and not (own is not None and path.is_relative_to(own))


def _lexical(text: str | Path) -> Path | None:
    """Absolute, `~` expanded, `..` removed, by text alone; None for text no path can be."""
    try:
        return Path(os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(text)))))
    except (ValueError, OSError):
        return None
