"""Each user's photos, stored by content: past the door a photo is an opaque id, never a path.

Whatever enters — inline bytes, a file read through `rcmu_agent.door`, a web upload, a library
collage — is kept once in the asking user's vault, named by the SHA-256 of its bytes, and from then
on graph state, checkpoints, AI messages, tool artifacts, MCP results and web state carry only its
id (`photo:` + 32 hex digits). An id is looked up in the current user's vault alone, so an id (or
anything else) written into a thread's state by anyone reads nothing of another user's and says
nothing about the disk: the one answer is "no such photo".

Storage sits behind `BlobStore`, four methods over opaque keys, so a shared store (a database, a
bucket) can replace the local folder without the vault changing. `FolderBlobs` is the local one:
files written whole (temp file, then rename) and read without following symlinks.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Protocol

from rcmu_agent.errors import NotFoundError
from rcmu_agent.files import atomic_write
from rcmu_agent.users import check_user

__all__ = ["PHOTO_ID", "BlobStore", "FolderBlobs", "PhotoVault", "is_photo_id", "photo_id"]

PHOTO_ID = re.compile(r"^photo:([0-9a-f]{32})$")
_KEY = re.compile(r"^[A-Za-z0-9_.@-]+(/[0-9a-f]{2}/[0-9a-f]{32}(\.[a-z]+)?)$")


class BlobStore(Protocol):
    """Bytes under keys of the form `user/ab/abcdef…` (what the vault writes; nothing else is asked)."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


class FolderBlobs:
    """A `BlobStore` in one local folder (the embedded default: `RCMU_HOME/vault`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):  # keys are built by the vault; anything else is a bug, not a path
            raise ValueError(f"not a vault key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if not path.exists():  # content-addressed: the same bytes are already there
            atomic_write(path, data)

    def get(self, key: str) -> bytes | None:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self._path(key), flags)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def photo_id(data: bytes) -> str:
    """The id a photo's bytes get in any vault: 128 bits of their SHA-256."""
    return "photo:" + hashlib.sha256(data).hexdigest()[:32]


def is_photo_id(value: object) -> bool:
    return isinstance(value, str) and PHOTO_ID.match(value) is not None


class PhotoVault:
    """Per-user, content-addressed photo bytes over a `BlobStore`."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    @classmethod
    def in_folder(cls, folder: Path) -> PhotoVault:
        return cls(FolderBlobs(folder))

    def put(self, user: str, data: bytes) -> str:
        """Keep `data` in `user`'s vault (once: the same bytes again write nothing); its id."""
        pid = photo_id(data)
        self.store.put(self._key(user, pid), data)
        return pid

    def get(self, user: str, pid: object) -> bytes:
        """The bytes of `pid` in `user`'s vault, or `NotFoundError("no such photo")` for anything else."""
        data = self.store.get(self._key(user, pid)) if is_photo_id(pid) else None
        if data is None:
            raise _missing(pid)
        return data

    def has(self, user: str, pid: object) -> bool:
        return is_photo_id(pid) and self.store.exists(self._key(user, pid))

    def delete(self, user: str, pid: str) -> None:
        if is_photo_id(pid):
            self.store.delete(self._key(user, pid))

    @staticmethod
    def _key(user: str, pid: object) -> str:
        digest = PHOTO_ID.match(str(pid))
        if digest is None:
            raise _missing(pid)
        hexed = digest.group(1)
        return f"{check_user(user)}/{hexed[:2]}/{hexed}"


def _missing(pid: object) -> NotFoundError:
    shown = f" ({pid})" if is_photo_id(pid) else ""
    return NotFoundError(
        f"no such photo{shown}", "send the photo itself (an image in the message, or base64) and ask again"
    )
