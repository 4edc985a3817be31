"""The RCMU instruction record: one JSONL line = one training example, and how it becomes a prompt.

Schema (one JSON object per line; pixel boxes, like every box in the project):

```
{"id": "coco-42-v2c-0",                       # unique per file
 "image": "/data/coco/train2014/x.jpg",        # path the trainer opens
 "image_size": [640, 480],                     # (width, height) of the image as displayed
 "regions": [{"box": [x1, y1, x2, y2], "category": "dog", "info": "Bella, 2, loves birds", "name": "Bella"}],
 "kind": "V2C",                                # V2C | C2V | UA-V2C | UA-C2V | RCID | RCID-cite
 "question": "What does the dog behind enjoy?",
 "answer": "Watching birds [1].",
 "citations": [1],                             # the `[n]` entry numbers the answer cites
 "source_id": "coco-42", "stage": "07_substitute"}
```

The text a record trains on is not stored: `record_prompt` rebuilds it with the agent's own
`number_entries` + `build_prompt`, exactly as the graph's compose node does for caller regions, so
training data and questions can never drift apart. Citation numbers refer to that numbering.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from rcmu_agent.citations import parse_citation_numbers
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.jsonl import BadLine, read_models
from rcmu_agent.prompt import build_prompt, clean_text, number_entries, resolve_placeholders
from rcmu_agent.schema import ContextEntry, Region

__all__ = [
    "KINDS",
    "InstructionRecord",
    "Kind",
    "RecordRegion",
    "ValidationReport",
    "check_record",
    "image_size",
    "record_entries",
    "record_prompt",
    "validate_file",
]

Kind = Literal["V2C", "C2V", "UA-V2C", "UA-C2V", "RCID", "RCID-cite"]
KINDS: tuple[str, ...] = ("V2C", "C2V", "UA-V2C", "UA-C2V", "RCID", "RCID-cite")
UNANSWERABLE: frozenset[str] = frozenset({"UA-V2C", "UA-C2V"})


class RecordRegion(BaseModel):
    """A region of the image and what is known about it (the `[n]` context entry when `info` is set)."""

    box: tuple[float, float, float, float]
    category: str
    info: str | None = None
    name: str | None = None


class InstructionRecord(BaseModel):
    """One RCMU training example; see the module docstring for the layout. Loose on purpose:
    `check_record` gives the reasons a line is unusable, so a bad line is reported, not a crash."""

    id: str
    image: str
    image_size: tuple[int, int]
    regions: list[RecordRegion] = Field(default_factory=list)
    kind: str
    question: str
    answer: str
    citations: list[int] = Field(default_factory=list)
    source_id: str = ""
    stage: str = ""

    @field_validator("image_size")
    @classmethod
    def _positive(cls, size: tuple[int, int]) -> tuple[int, int]:
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"image_size {size} must be positive (width, height)")
        return size


def record_entries(record: InstructionRecord) -> list[ContextEntry]:
    """The record's regions as numbered context entries, as the graph builds them for caller regions."""
    entries = [
        ContextEntry(
            region=Region(box=r.box, category=r.category, info=r.info), info=r.info, name=r.name if r.info else None
        )
        for r in record.regions
    ]
    return number_entries(entries)


def record_prompt(record: InstructionRecord, max_chars: int = 4000) -> str:
    """The text block after the image — the graph's compose node, step for step."""
    question = clean_text(record.question, "question", max_chars=max_chars)
    entries = record_entries(record)
    question, _ = resolve_placeholders(question, entries, record.image_size)
    return build_prompt(entries, question, record.image_size)


def check_record(record: InstructionRecord, *, actual_size: tuple[int, int] | None = None) -> list[str]:
    """Every reason the record cannot be trained on (empty list: usable)."""
    problems: list[str] = []
    if record.kind not in KINDS:
        problems.append(f"unknown kind {record.kind!r} (expected one of {', '.join(KINDS)})")
    for what in ("question", "answer"):
        if not " ".join(getattr(record, what).split()):
            problems.append(f"empty {what}")
    if actual_size is not None and tuple(actual_size) != tuple(record.image_size):
        problems.append(f"image_size {list(record.image_size)} but the image is {actual_size[0]}x{actual_size[1]}")
    width, height = actual_size or record.image_size
    for i, region in enumerate(record.regions, start=1):
        x1, y1, x2, y2 = region.box
        if not (x1 < x2 and y1 < y2):
            problems.append(f"region {i}: box {list(region.box)} is empty or inverted (x1<x2, y1<y2)")
        elif x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            problems.append(f"region {i}: box {list(region.box)} lies outside the {width}x{height} image")
        if not " ".join(region.category.split()):
            problems.append(f"region {i}: empty category")
        if region.info is not None and not clean_info(region.info):
            problems.append(f"region {i}: empty info")
    if problems:
        return problems
    try:
        numbered = {e.index for e in record_entries(record) if e.index is not None}
        record_prompt(record)
    except (InvalidInputError, ValueError) as exc:
        return [str(exc)]
    for n in record.citations:
        if n not in numbered:
            problems.append(f"citation [{n}] has no context entry (entries: {sorted(numbered) or 'none'})")
    for n in parse_citation_numbers(record.answer):
        if n not in numbered:
            problems.append(f"answer cites [{n}] but there is no entry {n}")
    if record.kind in UNANSWERABLE and record.citations:
        problems.append("an unanswerable record must not cite entries")
    return problems


def clean_info(info: str) -> str:
    return " ".join(info.split()).strip(". ")


@dataclass
class ValidationReport:
    """What `rcmu data validate` prints: the good count and each bad line as `file:line: reason`."""

    good: int
    bad: list[BadLine]

    @property
    def ok(self) -> bool:
        return not self.bad


def iter_valid(path: Path, bad: list[BadLine], *, open_images: bool = True) -> Iterator[InstructionRecord]:
    """The usable records of a file; the others go to `bad` with their line number and reason."""
    sizes: dict[str, tuple[int, int] | str] = {}
    seen: set[str] = set()
    for line, record in read_models(path, InstructionRecord, bad):
        actual: tuple[int, int] | None = None
        if open_images:
            found = sizes.get(record.image)
            if found is None:
                found = sizes[record.image] = image_size(record.image)
            if isinstance(found, str):
                bad.append(BadLine(Path(path), line, found))
                continue
            actual = found
        problems = check_record(record, actual_size=actual)
        if record.id in seen:
            problems.append(f"duplicate id {record.id!r}")
        seen.add(record.id)
        if problems:
            bad.append(BadLine(Path(path), line, "; ".join(problems)))
            continue
        yield record


def validate_file(path: Path, *, open_images: bool = True) -> ValidationReport:
    """Check every line of an instruction file (without stopping at the first bad one)."""
    bad: list[BadLine] = []
    good = sum(1 for _ in iter_valid(path, bad, open_images=open_images))
    return ValidationReport(good, bad)


def image_size(path: str) -> tuple[int, int] | str:
    """The displayed (EXIF-upright) size, read from the header only; a reason string when unusable."""
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        return f"missing image {path}"
    try:
        with Image.open(file) as img:
            orientation = img.getexif().get(0x0112, 1)
            width, height = img.size
    except (OSError, UnidentifiedImageError) as exc:
        return f"unreadable image {path}: {exc}"
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
