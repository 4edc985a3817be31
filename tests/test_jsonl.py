"""JSON Lines: bad lines reported with file:line and skipped; a torn tail from a killed writer repaired."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from rcmu_agent.errors import NotFoundError
from rcmu_agent.jsonl import BadLine, JsonlWriter, read_jsonl, read_models, write_jsonl

pytestmark = pytest.mark.unit


class Item(BaseModel):
    id: str
    n: int


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "n": 1}\n\nnot json\n[1]\n{"id": "b", "n": "x"}\n{"id": "c", "n": 3}\n')
    bad: list[BadLine] = []
    items = list(read_models(path, Item, bad))
    assert [(line, item.id) for line, item in items] == [(1, "a"), (6, "c")]
    assert [b.line for b in bad] == [3, 4, 5]
    assert str(bad[0]).startswith(f"{path}:3: not JSON")
    assert "expected a JSON object" in bad[1].reason
    assert bad[2].reason.startswith("n: ")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_torn_tail_is_cut_and_appending_resumes(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as writer:
        writer.write(Item(id="a", n=1))
        writer.write({"id": "b", "n": 2})
    with path.open("ab") as handle:  # what a kill in the middle of a write leaves behind
        handle.write(b'{"id": "c", "n"')
    with JsonlWriter(path) as writer:
        writer.write(Item(id="c", n=3))
    assert [r["id"] for _, r in read_jsonl(path)] == ["a", "b", "c"]


def test_write_jsonl_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    path.write_text('{"id": "old", "n": 0}\n')

    def records() -> object:
        yield Item(id="a", n=1)
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())  # type: ignore[arg-type]
    assert [r["id"] for _, r in read_jsonl(path)] == ["old"]  # the old file is intact
    assert write_jsonl(path, [Item(id="x", n=1), Item(id="y", n=2)]) == 2
    assert [r["id"] for _, r in read_jsonl(path)] == ["x", "y"]
