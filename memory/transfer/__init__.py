"""Memory you can carry: export a user's memory to a folder, import it (or a knowledge base) back.

The export is a documented, versioned folder — `manifest.json`, `entities.jsonl` and the reference
photos — with no vectors: they are recomputed on import, so a new embedding model or Chroma version
never strands a memory. It is written into a hidden temporary folder and renamed into place, so a
killed export leaves nothing at OUT. The format is described in the README ("Export and import").

An import is idempotent and resumable: a row naming an entity the memory already holds (same id, or
same name) updates it; one whose name, info, category and photos are all there already is skipped
before any face is detected, which is also how a rerun after a kill resumes. Faces are described in
worker processes (`transfer._faces`) once there are enough of them to pay for starting the workers
(a few are described in this process), and this process alone writes, in batches through
`MemoryStore.remember_many` (atomic per batch: a kill mid-batch is rolled back on the next write).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.memory._references import reference_name
from rcmu_agent.memory.library import LibraryDB
from rcmu_agent.memory.transfer._read import FORMAT, FORMAT_VERSION, ImportRow, Source, read_source
from rcmu_agent.schema import ExportReport, ImportReport
from rcmu_agent.users import check_user

if TYPE_CHECKING:
    from rcmu_agent.memory.store import MemoryStore
    from rcmu_agent.recognizer import Recognizer

__all__ = [
    "FORMAT_VERSION",
    "ImportRow",
    "export_memory",
    "import_memory",
    "import_rows",
]

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


# ---- export ------------------------------------------------------------------------------------------
def export_memory(
    store: MemoryStore, out: Path | str, *, users: Sequence[str] | None = None, library: bool = False
) -> ExportReport:
    """Write `users`' memory (None: every user) to the new folder `out`, atomically."""
    started = time.perf_counter()
    out = Path(out).expanduser().absolute()
    if out.exists():
        raise InvalidInputError(f"{out} already exists", "export to a new folder (nothing is overwritten)")
    # a user who taught nothing exports as an empty memory: an error would tell whoever asks which
    # user ids exist (it once listed them all)
    chosen = [check_user(u) for u in users] if users is not None else store.users()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.part-*"):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.part-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        report = ExportReport(path=str(out), users={}, photos=0)
        with (tmp / "entities.jsonl").open("w", encoding="utf-8") as handle:
            for user in chosen:
                entities = store.entities(user)
                report.users[user] = len(entities)
                for entity in entities:
                    photos = [_copy_photo(store, tmp, user, entity.id, p, report) for p in entity.photos]
                    line = {
                        "id": entity.id,
                        "user": user,
                        "name": entity.name,
                        "category": entity.category,
                        "info": entity.info,
                        "created_at": entity.created_at.isoformat(),
                        "photos": [p for p in photos if p],
                    }
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if library:
            report.library_photos = _export_library(LibraryDB.existing(store.home, store.database_url), tmp, chosen)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "users": report.users,
            "entities": "entities.jsonl",
            "photos": report.photos,
            "library": "library.jsonl" if library else None,
            "vectors": None,  # never exported: import recomputes them with the models it is configured with
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _copy_photo(
    store: MemoryStore, tmp: Path, user: str, entity_id: str, stored: str, report: ExportReport
) -> str | None:
    """Copy one reference photo into the export, read through the memory's reference store (the home
    folder or the shared database, whichever wrote it); its path in the export, relative to the folder."""
    name = reference_name(stored)
    try:
        data = store.references.read(user, entity_id, stored)
    except NotFoundError:
        data = None
    if data is None or name is None:
        report.missing_photos.append(stored)
        log.warning("reference photo %s is missing; exported without it", stored)
        return None
    rel = Path("photos") / user / entity_id / name
    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp / rel).write_bytes(data)
    report.photos += 1
    return rel.as_posix()


def _export_library(db: LibraryDB | None, tmp: Path, users: Sequence[str]) -> int:
    """Library metadata (paths, dates, places, who is where): for the record; `import` does not read it.
    The library's own sidecar (SQLite under the home, or PostgreSQL when shared), read through it."""
    count = 0
    with (tmp / "library.jsonl").open("w", encoding="utf-8") as handle:
        if db is None:
            return 0
        try:
            for user in users:
                ids = [r["id"] for r in db.rows('SELECT id FROM photos WHERE "user" = ? ORDER BY id', (user,))]
                for at in range(0, len(ids), 500):  # a few queries per 500 photos, not three per photo
                    chunk = ids[at : at + 500]
                    photos, paths, regions = (
                        db.photos(user, chunk),
                        db.paths_of(user, chunk),
                        db.regions_of(user, chunk),
                    )
                    for pid in chunk:
                        handle.write(json.dumps(_library_line(user, photos[pid], paths, regions), ensure_ascii=False))
                        handle.write("\n")
                        count += 1
        finally:
            db.close()
    return count


def _library_line(user: str, photo: Any, paths: dict[str, list[str]], regions: dict[str, list[Any]]) -> dict[str, Any]:
    """One library photo as `library.jsonl` records it: where it is, when and where taken, who is where."""
    return {
        "user": user,
        "sha256": photo["sha256"],
        "paths": paths.get(photo["id"], []),
        "taken_at": photo["taken_at"],
        "place": [photo["lat"], photo["lon"]] if photo["lat"] is not None else None,
        "size": [photo["width"], photo["height"]],
        "regions": [
            {
                "box": [r["x1"], r["y1"], r["x2"], r["y2"]],
                "category": r["category"],
                "entity_id": r["entity_id"],
                "name": r["name"],
                "named_by": r["named_by"],
            }
            for r in regions.get(photo["id"], [])
        ],
    }


# ---- import ------------------------------------------------------------------------------------------
def import_memory(
    recognizer: Recognizer,
    source: Path | str,
    *,
    user: str,
    from_user: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Load an export folder or a JSONL/CSV knowledge base into `user`'s memory (see the module doc).

    An export holding several users needs `from_user`; a knowledge base has no users.
    """
    read = read_source(source)
    rows = _rows_of(read, from_user)
    report = import_rows(recognizer, rows, user=user, workers=workers, progress=progress)
    report.source = str(source)
    report.rows += len(read.bad)
    report.failed[:0] = [str(b) for b in read.bad]
    return report


def _rows_of(read: Source, from_user: str | None) -> list[ImportRow]:
    """The rows of one user of an export. Messages name only the user asked for, never the others
    (whoever holds the folder reads them in its manifest.json)."""
    users = read.users
    if from_user is not None:
        if from_user not in users:
            raise NotFoundError(
                f"the export holds no entity of user {from_user!r}",
                "check --from-user against the `users` of the export's manifest.json",
            )
        return [r for r in read.rows if r.user == from_user]
    if len(users) > 1:
        raise InvalidInputError(
            f"the export holds {len(users)} users",
            "choose one with --from-user (the export's manifest.json lists them), or use --all-users",
        )
    return read.rows


def import_rows(
    recognizer: Recognizer,
    rows: Sequence[ImportRow],
    *,
    user: str,
    workers: int | None = None,
    progress: Progress | None = None,
    batch: int = 32,
) -> ImportReport:
    """Load `rows` into `user`'s memory; `workers` processes describe faces (0: in this process).

    None: one per CPU, started only once the photos left to describe would take longer here than
    starting them (`_faces.POOL_WORTH_SECONDS`), so a small import never waits for workers.
    A number starts that many with the first photo (at most one per person with photos)."""
    from rcmu_agent.memory.transfer._load import Loader, person_photos

    started = time.perf_counter()
    report = ImportReport(source="rows", user=check_user(user), rows=len(rows))
    people = sum(1 for r in rows if person_photos(r))
    photos_left: int | None = None
    if workers is None:
        workers, photos_left = os.cpu_count() or 1, sum(person_photos(r) for r in rows)
    workers = min(workers, max(people, 1)) if people else 0
    with Loader(recognizer, user, report, workers=workers, batch=batch, photos_left=photos_left) as loader:
        pending: deque[Any] = deque()
        window = max(8, 8 * workers)
        for read, row in enumerate(rows, start=1):
            planned = loader.plan(row)
            if planned is not None:
                pending.append(planned)
            while len(pending) > window:
                loader.take(pending.popleft())
            if progress is not None:
                progress(read - len(pending), len(rows))
        while pending:
            loader.take(pending.popleft())
            if progress is not None:
                progress(len(rows) - len(pending), len(rows))
        loader.flush()
    report.seconds = round(time.perf_counter() - started, 3)
    log.info(
        "imported %d row(s) for %s: %d added, %d updated, %d unchanged, %d failed",
        report.rows,
        user,
        report.added,
        report.updated,
        report.unchanged,
        len(report.failed),
    )
    return report
