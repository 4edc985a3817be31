"""Opening Chroma (embedded or server) and guarding writes against a second process."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rcmu_agent.errors import EmbeddingMismatchError, InvalidInputError, MemoryLockedError

log = logging.getLogger(__name__)

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def open_client(home: Path, chroma_url: str | None, *, generation: int = 0) -> Any:
    """`HttpClient` when a Chroma server URL is set, else a `PersistentClient` under `home/chroma`.

    Embedded Chroma keeps each process's view of the vectors in memory and does not see another
    process's later writes (reads then fail with "Error finding id"). A reader that meets this opens a
    fresh view with `generation` + 1: the same folder, spelled differently (`chroma/.`), which Chroma
    treats as a new instance that reads the files anew, leaving other holders of the old one alone.
    """
    import chromadb

    settings = chromadb.Settings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidInputError(
                f"RCMU_CHROMA_URL {chroma_url!r} is not an http(s) URL", "e.g. http://localhost:8000"
            )
        try:
            return chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=settings,
            )
        except Exception as exc:
            raise MemoryLockedError(
                f"cannot reach the Chroma server at {chroma_url}: {exc}",
                "start it with `chroma run --path DIR`, or unset RCMU_CHROMA_URL to use the embedded store",
            ) from exc
    path = home / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(path) + "/." * generation, settings=settings)
    except Exception as exc:
        if "locked" in str(exc).lower():
            raise MemoryLockedError(
                f"the memory at {path} is locked by another process",
                "wait for the other rcmu command to finish, or set RCMU_HOME to another directory",
            ) from exc
        raise


def collection(client: Any, name: str, model: str, space: str) -> Any:
    """Get or create a collection bound to one embedding model (explicit embeddings only)."""
    col = client.get_or_create_collection(
        name,
        embedding_function=None,
        metadata={"embedding_model": model},
        configuration={"hnsw": {"space": space}},
    )
    stored = (col.metadata or {}).get("embedding_model")
    if stored != model:
        raise EmbeddingMismatchError(
            f"collection {name!r} was built with {stored!r}, but {model!r} is configured",
            "configure the model the memory was built with, or move the memory aside and teach it again",
        )
    return col


PAGE = 10_000  # rows per read: Chroma's SQLite refuses one query over ~32,000 rows ("too many SQL variables")


def get_all(col: Any, *, where: dict[str, Any], include: list[str]) -> dict[str, list[Any]]:
    """Every row matching `where`, read in pages (a user can hold 100,000 references)."""
    out: dict[str, list[Any]] = {"ids": [], **{key: [] for key in include}}
    offset = 0
    while True:
        got = col.get(where=where, include=include, limit=PAGE, offset=offset)
        out["ids"].extend(got["ids"])
        for key in include:
            values = got[key]
            out[key].extend(values if values is not None else [])
        if len(got["ids"]) < PAGE:
            return out
        offset += PAGE


@contextlib.contextmanager
def write_lock(home: Path, timeout: float, database_url: str | None = None) -> Iterator[None]:
    """One writer at a time per home; a second one waits `timeout` seconds, then gets a clear error.

    With a shared database (replicas on several machines, one Chroma server) the lock is PostgreSQL's
    advisory lock instead of a file only this machine sees."""
    if database_url:
        from rcmu_agent.postgres import advisory_lock

        def busy() -> MemoryLockedError:
            return MemoryLockedError(
                "another replica is writing to the shared memory",
                "wait for it to finish and retry, or raise RCMU_LOCK_TIMEOUT",
            )

        with advisory_lock(database_url, "memory", timeout, busy):
            yield
        return
    from filelock import FileLock, Timeout

    home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(home / "memory.lock"), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout as exc:
        raise MemoryLockedError(
            f"another rcmu process is writing to the memory at {home}",
            "wait for it to finish and retry, or raise RCMU_LOCK_TIMEOUT",
        ) from exc
