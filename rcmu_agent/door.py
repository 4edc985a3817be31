"""The one door a photo file comes in by: opened once, checked on the opened file, read from it.

A path a model, a remote client or an import folder names is untrusted twice over: it may point
anywhere, and a file inside an allowed folder may be swapped for a symlink (or a folder on its way
for a link to another) between a check and a read. So the check is made on the *open descriptor*:

1. the path is normalised by text alone and refused unless it lies inside a root (nothing outside is
   ever looked at, so a refusal says nothing about what exists there);
2. symlinks are resolved and the real path must still lie inside a real root, outside `/proc`,
   `/sys` and `/dev` and outside every `deny` folder;
3. the real path is opened with `O_NOFOLLOW` (a final component swapped for a link fails) and
   `O_NONBLOCK` (a FIFO never blocks);
4. the descriptor must be a regular file, the same device and inode as the real path, and — where
   `/proc/self/fd` tells — the file the kernel really opened must lie inside a root and outside every
   `deny` folder (a folder swapped for a link on the way is caught here);
5. with `single_link`, a file with other hard links is refused: a hard link is the one way a file
   inside a root can be another user's stored photo; with `no_links`, a symlink anywhere on the way
   is refused too, at resolving and on the opened file (an import folder names its files exactly);
6. the bytes are read from that descriptor, never by path again.

Every refusal is one of two fixed sentences ("outside the allowed folders", "not a readable photo"),
naming only the text the caller gave.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from rcmu_agent.errors import InvalidInputError

__all__ = ["SYSTEM_TREES", "Inbound", "read_photo_file"]

SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))
_OUTSIDE = "send the photo as base64, or put it under one of the folders in RCMU_ALLOWED_ROOTS"
_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Inbound:
    """A photo's bytes as they came in, and the name error messages call it by (never a server path
    beyond what the caller wrote)."""

    data: bytes
    name: str = "photo"


def read_photo_file(
    path: str | Path,
    roots: Sequence[Path],
    *,
    deny: Sequence[Path] = (),
    max_bytes: int = 50 << 20,
    single_link: bool = False,
    no_links: bool = False,
) -> Inbound:
    """The bytes of the photo file `path` names, read through the checks in the module docstring."""
    text = os.fspath(path)
    if text.startswith("file://"):
        text = unquote(text.removeprefix("file://").removeprefix("localhost"))
    shown = shown_path(text)
    outside = InvalidInputError(f"photo {shown} is outside the allowed folders", _OUTSIDE)
    unreadable = InvalidInputError(f"photo {shown} is not a readable photo", "give the path of one image file")
    try:
        lexical = normal_path(text)
        written = [normal_path(os.fspath(r)) for r in roots]
        real_roots = [Path(os.path.realpath(r)) for r in written]
        real_deny = [Path(os.path.realpath(normal_path(os.fspath(d)))) for d in deny]
    except (ValueError, OSError):  # NUL bytes, names over the length limit
        raise outside from None
    if not any(_inside(lexical, r) for r in (*written, *real_roots)):
        raise outside  # decided without touching the disk
    try:
        real = Path(os.path.realpath(lexical))
    except (ValueError, OSError):
        raise outside from None
    if not _permitted(real, real_roots, real_deny):
        raise outside
    linked = InvalidInputError(f"photo {shown} is reached through a symbolic link", "give the file itself")
    exact = _unlinked(lexical, written) if no_links else None  # where the file is when no link is followed
    if no_links and real != exact:
        raise linked
    try:
        fd = os.open(real, _FLAGS)
    except (ValueError, OSError):
        raise unreadable from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise unreadable  # a device, FIFO, socket or folder is never read
        try:
            named = os.stat(real, follow_symlinks=False)
        except OSError:
            raise unreadable from None
        if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
            raise unreadable  # the path changed between resolving and opening
        really = _opened_path(fd)
        if really is not None and not _permitted(really, real_roots, real_deny):
            raise outside  # a folder on the way was swapped for a link out
        if no_links and really is not None and really != exact:
            raise linked  # a folder on the way became a link after resolving
        if single_link and opened.st_nlink > 1:
            raise InvalidInputError(
                f"photo {shown} has other hard links", "copy the photo (cp, not ln) and give the copy"
            )
        if opened.st_size > max_bytes:
            raise _too_big(shown, opened.st_size, max_bytes)
        data = _read_all(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise _too_big(shown, len(data), max_bytes)
    return Inbound(data, name=_printable(text))


def _permitted(real: Path, roots: Sequence[Path], deny: Sequence[Path]) -> bool:
    return (
        any(_inside(real, r) for r in roots)
        and not any(_inside(real, t) for t in SYSTEM_TREES)
        and not any(_inside(real, d) for d in deny)
    )


def _unlinked(lexical: Path, roots: Sequence[Path]) -> Path | None:
    """`lexical` with its root resolved and nothing below it: the path a file has when no link below
    the root leads to it (links above the root, such as a home folder on another disk, are the user's)."""
    for root in roots:
        if _inside(lexical, root):
            return Path(os.path.realpath(root)) / lexical.relative_to(root)
    return None


def _opened_path(fd: int) -> Path | None:
    """The path of the file the kernel opened (Linux), whatever links led there; None where unknown."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return Path(target) if target.startswith("/") and not target.endswith(" (deleted)") else None


def _read_all(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = os.read(fd, min(1 << 20, limit - size))
        except BlockingIOError:  # pragma: no cover - regular files never block
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _too_big(shown: str, size: int, limit: int) -> InvalidInputError:
    return InvalidInputError(
        f"photo {shown} is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB limit",
        "resize it, or raise RCMU_MAX_IMAGE_BYTES",
    )


def normal_path(text: str) -> Path:
    """Absolute, `~` expanded and `..` removed by text alone (no symlink is followed yet)."""
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(text))))


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _printable(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 120 else text[:117] + "..."


def shown_path(text: str) -> str:
    """The caller's own text, printable and short, quoted for a message."""
    return repr(_printable(text))
