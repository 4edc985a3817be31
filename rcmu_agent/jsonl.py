"""JSON Lines, read forgivingly and written durably: the format of every dataset, stage output and
evaluation record in the project.

Reading reports a bad line as `file:line: reason` and carries on, so one broken record never costs
the rest. Writing appends one fsynced line at a time, so a killed process loses at most the line it
was writing — and that torn tail is cut off the next time the file is opened for appending, which is
what makes every stage and evaluation resumable by "skip the ids already in the output".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

from pydantic import BaseModel, ValidationError

from rcmu_agent.errors import NotFoundError
from rcmu_agent.files import atomic_write

__all__ = ["BadLine", "JsonlWriter", "read_jsonl", "read_models", "write_jsonl"]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class BadLine:
    """A line that could not be used, and why; `str()` is the `file:line: reason` users see."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def read_jsonl(path: Path, bad: list[BadLine] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every well-formed object line; others go to `bad` (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", "check the path")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if bad is not None:
                    bad.append(BadLine(path, number, f"not JSON ({exc.__class__.__name__}: {exc})"[:200]))
                continue
            if not isinstance(value, dict):
                if bad is not None:
                    bad.append(BadLine(path, number, f"expected a JSON object, got {type(value).__name__}"))
                continue
            yield number, value


def read_models(path: Path, model: type[M], bad: list[BadLine] | None = None) -> Iterator[tuple[int, M]]:
    """Lines validated into `model`; a line that fails validation goes to `bad` with pydantic's first reason."""
    for number, value in read_jsonl(path, bad):
        try:
            yield number, model.model_validate(value)
        except ValidationError as exc:
            if bad is not None:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "record"
                bad.append(BadLine(Path(path), number, f"{where}: {first['msg']}"))


class JsonlWriter:
    """Append-only, one durable line per `write`. Opening it repairs a torn last line."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        self._handle = self.path.open("a", encoding="utf-8")
        self._fsync = fsync

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        self._handle.write(_line(record))
        self._handle.flush()
        if self._fsync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def write_jsonl(path: Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write a whole file atomically (temp file, then rename); returns the number of lines."""
    count = 0

    def write(handle: BinaryIO) -> None:
        nonlocal count
        for record in records:
            handle.write(_line(record).encode("utf-8"))
            count += 1
        handle.flush()
        os.fsync(handle.fileno())

    atomic_write(path, write)
    return count


def _line(record: BaseModel | dict[str, Any]) -> str:
    data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    return json.dumps(data, ensure_ascii=False) + "\n"


def _cut_torn_tail(path: Path) -> None:
    """A process killed mid-`write` leaves a last line without its newline: drop just that line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        keep = handle.read().rfind(b"\n") + 1
        handle.truncate(keep)
