"""`rcmu data validate`: check a dataset file in whichever of the project's formats it is in.

The project has four: training records (`records.py`: `image_size` on every line, image paths as the
trainer opens them) and the three evaluation sets (`rcmu_agent.evals.datasets`: no `image_size`, image
paths relative to the file). Checking a test set as training records fails every line for reasons that
say nothing about the file ("image_size: Field required" on all 18 lines of the project's own RCMU
sample), so the format is recognised from the file and named in the summary, and `--format` overrides
the guess. Each evaluation set is read by the loader `rcmu eval` uses, so "good" means the run will
take it; RCMU test items also get the training checks that apply (boxes inside the image, citations
to existing entries, a prompt the agent can build).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.train.records import InstructionRecord, RecordRegion, check_record, image_size, validate_file

__all__ = ["FORMATS", "FORMAT_NAMES", "Checked", "Format", "detect_format", "validate"]

Format = Literal["train", "rcmu", "rcpbench", "yollava"]
FORMATS: tuple[str, ...] = get_args(Format)
FORMAT_NAMES: dict[str, str] = {
    "train": "training records",
    "rcmu": "an RCMU test set",
    "rcpbench": "an RC&P-Bench set",
    "yollava": "a Yo'LLaVA set",
}
_FOLDER_FIX = (
    "give a JSONL file, an RC&P-Bench folder (gallery.jsonl, questions.jsonl) or a Yo'LLaVA folder (database.json)"
)


@dataclass
class Checked:
    """What `rcmu data validate` prints: usable items, each bad one as `where: reason`, and the format
    they were checked as (a count means little without it)."""

    format: Format
    good: int
    bad: list[str] = field(default_factory=list)


def detect_format(path: Path) -> Format:
    """The format of `path`: evaluation sets by their folder's files, a JSONL by its lines — training
    records carry `image_size`, an RCMU test item never does. A JSONL with no usable line is taken as
    training records, the command's first use, and its lines are reported as such."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path} does not exist", "check the path")
    folder = path if path.is_dir() else path.parent
    if path.is_dir() or path.name in ("gallery.jsonl", "questions.jsonl"):
        if (folder / "gallery.jsonl").is_file():
            return "rcpbench"
        if (folder / "database.json").is_file():
            return "yollava"
        if path.is_dir():
            raise InvalidInputError(f"{path} is a folder with no dataset in it", _FOLDER_FIX)
    if path.suffix.lower() == ".json":
        if (folder / "database.json").is_file():
            return "yollava"
        raise InvalidInputError(f"{path} is JSON, not one of the dataset formats", _FOLDER_FIX)
    return "train" if _any_line_has(path, "image_size") or not _any_line_has(path, "image") else "rcmu"


def _any_line_has(path: Path, key: str) -> bool:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and key in value:
                return True
    return False


def validate(path: Path, format: str | None = None) -> Checked:
    """Check every item of `path` as `format` (None: recognise it) without stopping at the first bad one."""
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise InvalidInputError(f"unknown format {format!r}", f"use one of {', '.join(FORMATS)}")
    checked = _check(path, cast(Format, format) if format is not None else detect_format(path))
    if not checked.good and not checked.bad:  # "0 good, 0 bad" would read as a pass
        raise InvalidInputError(f"{path} holds no records", "check that this is the file you meant")
    return checked


def _check(path: Path, chosen: Format) -> Checked:
    if chosen == "train":
        report = validate_file(path)
        return Checked("train", report.good, [str(b) for b in report.bad])
    if chosen == "rcmu":
        return _rcmu(path)
    if chosen == "rcpbench":
        from rcmu_agent.evals.datasets import load_rcpbench

        bench = load_rcpbench(path.parent if path.name == "gallery.jsonl" else path)
        return Checked("rcpbench", len(bench.gallery) + len(bench.questions), [str(p) for p in bench.problems])
    from rcmu_agent.evals.datasets import load_yollava

    if not ((path if path.is_dir() else path.parent) / "database.json").is_file():
        raise NotFoundError(f"{path} has no database.json beside it", "give the folder holding RAP's Yo'LLaVA files")
    found = load_yollava(path)
    return Checked("yollava", len(found.concepts) + len(found.questions), [str(p) for p in found.problems])


def _rcmu(path: Path) -> Checked:
    """The RCMU test set as `rcmu eval rcmu` loads it, plus the training checks its items must pass too:
    the agent builds the same prompt from them. An RCID item may lack a reference answer (its score
    needs none), so a stand-in keeps the other checks from reporting an empty answer."""
    from rcmu_agent.evals.datasets import load_rcmu

    loaded = load_rcmu(path)
    bad = [(_line_of(p.where), str(p)) for p in loaded.problems]
    good = 0
    lines = _line_numbers(path)
    for item in loaded.items:
        line = lines.get(item.id, 0)
        size = image_size(str(item.image_path))
        if isinstance(size, str):
            bad.append((line, f"{path}:{line}: {size}"))
            continue
        record = InstructionRecord(
            id=item.id,
            image=str(item.image_path),
            image_size=size,
            regions=[RecordRegion(box=r.box, category=r.category, info=r.info, name=r.name) for r in item.regions],
            kind=item.kind,
            question=item.question,
            answer=item.answer or "(no reference description)",
        )
        problems = check_record(record, actual_size=size)
        if problems:
            bad.append((line, f"{path}:{line}: {'; '.join(problems)}"))
        else:
            good += 1
    return Checked("rcmu", good, [text for _, text in sorted(bad, key=lambda b: b[0])])


def _line_of(where: str) -> int:
    line = where.rpartition(":")[2]
    return int(line) if line.isdigit() else 0


def _line_numbers(path: Path) -> dict[str, int]:
    """Item id -> its line, for reporting a loaded item the way a malformed line is reported."""
    numbers: dict[str, int] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                numbers.setdefault(value["id"], number)
    return numbers
