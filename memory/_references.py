"""Reference photos of the entities in memory, and the journal of the write in progress: in the home
folder on one machine, in PostgreSQL when replicas share a deployment (`RCMU_DATABASE_URL`).

An entity lists its reference photos as stored strings (`Entity.photos`), and each string's stem is
the photo's digest, which also names its vectors (`entity:digest`): the commit point of a write. The
folder keeps today's layout, `home/photos/<user>/<entity>/<digest><suffix>`, and its strings are those
absolute paths; the database keeps the bytes in a row per photo, and its strings are
`ref:<entity>/<digest><suffix>`, which name no file on any machine.

A stored string is data, not a path: reading takes the user and the entity from the caller (who found
the entity in that user's memory) and only the last component of the string, checked to be a digest
and a suffix. So a home that was moved, or an old home whose strings are paths on another machine,
reads the same photos, and no string in the store can lead a reader anywhere else.

The journal lists the photos a write is about to add before it adds them (`_store_write`). In the
folder it is `home/memory.journal`; in the database one row named after the write lock, so a replica
killed mid-write leaves a journal that the next writer on any replica finishes (it takes the same
PostgreSQL lock first).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from rcmu_agent.errors import NotFoundError
from rcmu_agent.files import atomic_write
from rcmu_agent.memory._records import check_entity_id, photo_digest
from rcmu_agent.postgres import Statements
from rcmu_agent.users import check_user

__all__ = ["REFERENCE", "ReferencePhotos", "WriteJournal", "memory_storage", "reference_name"]

REFERENCE = "ref:"  # a stored string of the database backend: ref:<entity>/<digest><suffix>
JOURNAL = "memory"  # the journal's row: the name of the write lock it is written under
_NAME = re.compile(r"^[0-9a-f]{16}(\.[^/\\\x00]{1,32})?$")  # <digest><suffix>, as the writer names a photo
_TABLES = (
    """CREATE TABLE IF NOT EXISTS rcmu_reference_photos (
        user_id TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        name TEXT NOT NULL,
        data BYTEA NOT NULL,
        created TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, entity_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS rcmu_journals (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        written TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
)


def reference_name(stored: object) -> str | None:
    """The `<digest><suffix>` a stored string ends with, or None when it is not one a writer made."""
    if not isinstance(stored, str):
        return None
    name = stored.rsplit("/", 1)[-1]
    return name if _NAME.match(name) else None


class _Backend(Protocol):
    def put(self, user: str, entity_id: str, name: str, data: bytes) -> tuple[str, bool]: ...
    def get(self, user: str, entity_id: str, name: str) -> bytes | None: ...
    def remove(self, user: str, entity_id: str, digests: list[str]) -> None: ...
    def forget(self, user: str, entity_id: str) -> None: ...


class ReferencePhotos:
    """The reference photos of every user's entities, content-addressed per entity: putting the same
    bytes for the same entity again writes nothing."""

    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def put(self, user: str, entity_id: str, data: bytes, suffix: str) -> tuple[str, bool]:
        """Keep `data` as a reference of the entity: the string its entity will list, and whether this
        call stored it (False: it was there already; a rollback must leave it)."""
        name = f"{photo_digest(data)}{suffix.lower()}"
        if not _NAME.match(name):  # a suffix no reader would take back (over 32 characters, a backslash)
            name = f"{photo_digest(data)}.img"
        return self._backend.put(check_user(user), check_entity_id(entity_id), name, data)

    def read(self, user: str, entity_id: str, stored: object) -> bytes:
        """The bytes of the reference `stored` (a string of `user`'s entity `entity_id`), or a one-line
        `NotFoundError` when they are not in the store."""
        name = reference_name(stored)
        data = self._backend.get(check_user(user), check_entity_id(entity_id), name) if name else None
        if data is None:
            raise NotFoundError(
                f"a reference photo of {entity_id} is missing from the memory",
                "teach it again with a photo (remember), or forget it and teach it anew",
            )
        return data

    def remove(self, user: str, entity_id: str, digests: Iterable[str]) -> None:
        """Drop the entity's copies of these digests (a rolled-back or killed write's)."""
        wanted = [d for d in digests if re.fullmatch(r"[0-9a-f]{16}", d)]
        if wanted:
            self._backend.remove(check_user(user), check_entity_id(entity_id), wanted)

    def forget(self, user: str, entity_id: str) -> None:
        """Drop every reference of the entity."""
        self._backend.forget(check_user(user), check_entity_id(entity_id))


class FolderReferences:
    """`home/photos/<user>/<entity>/<digest><suffix>`, files written whole; stored strings are the paths."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def _folder(self, user: str, entity_id: str) -> Path:
        return self.home / "photos" / user / entity_id

    def put(self, user: str, entity_id: str, name: str, data: bytes) -> tuple[str, bool]:
        target = self._folder(user, entity_id) / name
        if target.exists():
            return str(target), False
        atomic_write(target, data)
        return str(target), True

    def get(self, user: str, entity_id: str, name: str) -> bytes | None:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self._folder(user, entity_id) / name, flags)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            return handle.read()

    def remove(self, user: str, entity_id: str, digests: list[str]) -> None:
        folder = self._folder(user, entity_id)
        for digest in digests:  # a half-written temp file (.<digest>….part) too
            for path in folder.glob(f"*{digest}*"):
                path.unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    def forget(self, user: str, entity_id: str) -> None:
        shutil.rmtree(self._folder(user, entity_id), ignore_errors=True)


class PostgresReferences:
    """One row per reference photo in `rcmu_reference_photos`; stored strings are `ref:<entity>/<name>`."""

    def __init__(self, sql: Statements) -> None:
        self.sql = sql

    def put(self, user: str, entity_id: str, name: str, data: bytes) -> tuple[str, bool]:
        cursor = self.sql.run(
            "INSERT INTO rcmu_reference_photos (user_id, entity_id, name, data) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (user, entity_id, name, data),
        )
        return f"{REFERENCE}{entity_id}/{name}", cursor.rowcount == 1

    def get(self, user: str, entity_id: str, name: str) -> bytes | None:
        row = self.sql.run(
            "SELECT data FROM rcmu_reference_photos WHERE user_id = %s AND entity_id = %s AND name = %s",
            (user, entity_id, name),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def remove(self, user: str, entity_id: str, digests: list[str]) -> None:
        self.sql.run(
            "DELETE FROM rcmu_reference_photos WHERE user_id = %s AND entity_id = %s AND left(name, 16) = ANY(%s)",
            (user, entity_id, digests),
        )

    def forget(self, user: str, entity_id: str) -> None:
        self.sql.run("DELETE FROM rcmu_reference_photos WHERE user_id = %s AND entity_id = %s", (user, entity_id))


class WriteJournal:
    """What the write in progress is about to add (JSON text): `home/memory.journal`, or the row
    `rcmu_journals['memory']` in the shared database."""

    def __init__(self, home: Path, sql: Statements | None = None) -> None:
        self.path = home / "memory.journal"
        self.sql = sql

    def write(self, body: str) -> None:
        if self.sql is None:
            atomic_write(self.path, body)
            return
        self.sql.run(
            "INSERT INTO rcmu_journals (name, body) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body, written = now()",
            (JOURNAL, body),
        )

    def read(self) -> str | None:
        if self.sql is None:
            try:
                return self.path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return None
        row = self.sql.run("SELECT body FROM rcmu_journals WHERE name = %s", (JOURNAL,)).fetchone()
        return None if row is None else str(row[0])

    def clear(self) -> None:
        if self.sql is None:
            self.path.unlink(missing_ok=True)
            return
        self.sql.run("DELETE FROM rcmu_journals WHERE name = %s", (JOURNAL,))


def memory_storage(home: Path, database_url: str | None) -> tuple[ReferencePhotos, WriteJournal]:
    """The memory's reference photos and journal: in `home`, or (`database_url` set) in PostgreSQL over
    one set of connections. Nothing connects before first use."""
    if not database_url:
        return ReferencePhotos(FolderReferences(home)), WriteJournal(home)
    sql = Statements(database_url, _TABLES)
    return ReferencePhotos(PostgresReferences(sql)), WriteJournal(home, sql)
