"""Reading what `rcmu import` loads: an export folder, or a knowledge base as JSONL or CSV.

Every source becomes the same `ImportRow`s, each carrying `FILE:LINE` so a row that cannot be used is
reported where the user can fix it, and skipped; the rest still load. A row keeps its photo paths as
written, with the folder they must stay inside (`_paths` holds them to it when they are read):
joining or expanding them here would hide an absolute path or a `~` that must be refused.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.jsonl import BadLine, read_jsonl
from rcmu_agent.memory._records import check_entity_id
from rcmu_agent.memory.transfer._paths import check_inside, check_single, written_path

__all__ = ["FORMAT", "FORMAT_VERSION", "ImportRow", "Source", "read_source"]

FORMAT = "rcmu-memory"
FORMAT_VERSION = 1
PHOTO_SEPARATORS = (";", "|")  # inside a CSV `photos` cell


@dataclass(frozen=True)
class ImportRow:
    """One entity to load, with where it came from (`FILE:LINE`) for error messages.

    `folder` is the folder its photo paths must stay inside (an export's, or a knowledge base's): the
    paths are then relative to it, as the file wrote them. None: paths from the calling program, read
    as they are (relative to the working folder).
    """

    where: str
    name: str
    info: str
    category: str = "person"
    photos: tuple[Path, ...] = ()
    entity_id: str | None = None
    created_at: datetime | None = None
    user: str | None = None  # the user an export row belonged to (None for a knowledge base)
    folder: Path | None = None


@dataclass
class Source:
    """Rows read from one input, the lines that could not be read, and the export's manifest if any."""

    rows: list[ImportRow] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @property
    def users(self) -> list[str]:
        return sorted({r.user for r in self.rows if r.user})


def read_source(path: Path | str) -> Source:
    """An export folder (`manifest.json` + `entities.jsonl`), a `.jsonl` or a `.csv` knowledge base."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_export(path)
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", "give an export folder, a .jsonl or a .csv file")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    return _read_jsonl(path, _folder(path.parent))


def _folder(path: Path) -> Path:
    """The folder a source's rows are held to, absolute (by text: a link the user named is theirs)."""
    return Path(os.path.abspath(path))


def _read_export(folder: Path) -> Source:
    manifest_path = _inside(folder, "manifest.json")
    if not manifest_path.is_file():
        raise InvalidInputError(
            f"{folder} has no manifest.json, so it is not an rcmu export",
            "give a folder written by `rcmu export`, or a .jsonl / .csv knowledge base file",
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{manifest_path} is not JSON ({exc})", "export the memory again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInputError(f"{manifest_path} is not an rcmu memory manifest", "export the memory again")
    version = manifest.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InvalidInputError(
            f"{folder} uses format version {version!r}; this rcmu reads up to {FORMAT_VERSION}",
            "upgrade rcmu-agent to import it",
        )
    entities = manifest.get("entities") or "entities.jsonl"
    if not isinstance(entities, str):
        raise InvalidInputError(f"{manifest_path}: `entities` is not a file name", "export the memory again")
    source = _read_jsonl(_inside(folder, entities), _folder(folder), export=True)
    source.manifest = manifest
    return source


def _inside(folder: Path, name: str) -> Path:
    """A file of the export folder itself (manifest, entities): held to the photos' rules, since the
    manifest names the entities file and the entities file names the photos (the fix: export again)."""
    given = written_path(name)
    try:
        path = check_inside(folder, given, what="file")
        check_single(path, "file", given)
    except NotFoundError:
        return folder / given  # reported by the reader, in its words
    except InvalidInputError as exc:
        raise InvalidInputError(f"{folder}: {exc.problem}", "export the memory again") from None
    return path


def _read_jsonl(path: Path, folder: Path, *, export: bool = False) -> Source:
    source = Source()
    for number, value in read_jsonl(path, source.bad):
        _add(source, path, folder, number, value, export)
    return source


def _read_csv(path: Path) -> Source:
    source = Source()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"name", "photos"} - {h.strip().lower() for h in reader.fieldnames or []}
            if missing:
                raise InvalidInputError(
                    f"{path}:1: the header lacks {', '.join(sorted(missing))}",
                    "use the columns name, info, category, photos (photos separated by ';')",
                )
            for record in reader:
                row = {(k or "").strip().lower(): v for k, v in record.items() if k is not None}
                raw = row.get("photos") or ""
                for sep in PHOTO_SEPARATORS:
                    raw = raw.replace(sep, "\n")
                row["photos"] = [p.strip() for p in raw.splitlines() if p.strip()]
                _add(source, path, _folder(path.parent), reader.line_num, row, False)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path} is not UTF-8 text", "save the CSV as UTF-8") from exc
    return source


def _add(source: Source, path: Path, folder: Path, number: int, value: dict[str, Any], export: bool) -> None:
    try:
        source.rows.append(_row(path, folder, number, value, export))
    except (InvalidInputError, ValueError, TypeError) as exc:
        reason = exc.problem if isinstance(exc, InvalidInputError) else str(exc)
        source.bad.append(BadLine(path, number, reason))


def _text(value: Any, what: str, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"{what} is empty")
    return value.strip()


def _row(path: Path, folder: Path, number: int, value: dict[str, Any], export: bool) -> ImportRow:
    photos = value.get("photos", [])
    if isinstance(photos, str):
        photos = [photos]
    if not isinstance(photos, list) or not all(isinstance(p, str) and p.strip() for p in photos):
        raise ValueError("photos must be a list of file paths")
    paths = tuple(written_path(p) for p in photos)
    entity_id = value.get("id")
    if entity_id is not None and entity_id != "":
        entity_id = check_entity_id(str(entity_id) if isinstance(entity_id, int) else entity_id)
    created = value.get("created_at")
    user = value.get("user") if export else None
    return ImportRow(
        where=f"{path}:{number}",
        name=_text(value.get("name"), "name", required=True),
        info=_text(value.get("info"), "info", required=False),
        category=_text(value.get("category"), "category", required=False) or "person",
        photos=paths,
        entity_id=entity_id or None,
        created_at=datetime.fromisoformat(created) if isinstance(created, str) and created else None,
        user=_text(user, "user", required=True) if export else None,
        folder=folder,
    )
