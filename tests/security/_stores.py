"""What a memory keeps, read straight from where it keeps it, in either storage mode: for tests that
check a crash left nothing half-written without asking the code under test.

Embedded (no database URL): reference photos are files under `home/photos/<user>/<entity>/`, the
write journal is `home/memory.journal` and the library's tables are `home/library/library.sqlite`.
Shared (`RCMU_DATABASE_URL`): all of them are in that PostgreSQL database (`rcmu_reference_photos`,
`rcmu_journals`, the schema `rcmu_library`), and the home may hold nothing but caches.
Imported by the crash drivers (run as scripts from this folder) and by tests as `tests.security._stores`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["journal", "kept_on_disk", "library_rows", "reference_key", "references", "service_settings"]


def service_settings(env: dict[str, str]) -> dict[str, Any]:
    """`Settings` keywords for a mode's environment ({} embedded; RCMU_DATABASE_URL and RCMU_CHROMA_URL
    shared): `database_url`, `chroma_url`, None where unset (so the process's own environment is ignored)."""
    return {"database_url": env.get("RCMU_DATABASE_URL"), "chroma_url": env.get("RCMU_CHROMA_URL")}


def _rows(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query; none where the table was never made (nothing was ever written there)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            return list(conn.execute(sql, params).fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def references(home: Path, database_url: str | None, user: str | None = None) -> list[str]:
    """Every stored reference photo (of `user`, or of everyone) as `user/entity/<digest><suffix>`, sorted;
    a half-written file counts too."""
    if database_url:
        rows = _rows(database_url, "SELECT user_id, entity_id, name FROM rcmu_reference_photos")
        return sorted(f"{u}/{e}/{n}" for u, e, n in rows if user in (None, u))
    root = home / "photos"
    found = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(key for key in found if user in (None, key.split("/", 1)[0]))


def reference_key(user: str, stored: str) -> str:
    """The `references` key of an entity's stored photo string (a path embedded, `ref:<entity>/<name>` shared)."""
    entity, name = stored.removeprefix("ref:").replace("\\", "/").split("/")[-2:]
    return f"{user}/{entity}/{name}"


def journal(home: Path, database_url: str | None) -> str | None:
    """The memory's write journal (a write in progress, or one killed and not yet finished), or None."""
    if database_url:
        rows = _rows(database_url, "SELECT body FROM rcmu_journals WHERE name = 'memory'")
        return str(rows[0][0]) if rows else None
    path = home / "memory.journal"
    return path.read_text() if path.exists() else None


def kept_on_disk(home: Path) -> list[str]:
    """Files under `home` outside its caches (any folder named `cache`): in shared mode there must be none."""
    if not home.exists():
        return []
    files = (p.relative_to(home) for p in home.rglob("*") if p.is_file())
    return sorted(p.as_posix() for p in files if "cache" not in p.parts[:-1])


def library_rows(home: Path, database_url: str | None) -> dict[str, int]:
    """Rows of the library's tables, every user's: photos, their paths, their regions, and photos whose
    text vector is still to be written (`embedded` = 0)."""
    counts = {
        "photos": "SELECT COUNT(*) FROM {}photos",
        "paths": "SELECT COUNT(*) FROM {}paths",
        "regions": "SELECT COUNT(*) FROM {}regions",
        "pending": "SELECT COUNT(*) FROM {}photos WHERE embedded = 0",
    }
    if database_url:
        found = {key: _rows(database_url, sql.format("rcmu_library.")) for key, sql in counts.items()}
        return {key: int(rows[0][0]) if rows else 0 for key, rows in found.items()}
    import contextlib
    import sqlite3

    path = home / "library" / "library.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {key: int(conn.execute(sql.format("")).fetchone()[0]) for key, sql in counts.items()}
