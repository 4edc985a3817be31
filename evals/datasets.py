"""The evaluation sets, as documented JSON Lines (and RAP's JSON for Yo'LLaVA), with forgiving loaders.

Every image path is relative to the file that names it (absolute paths also work), so a full-size
official set and the small sample in `samples/` load the same way. A malformed line is reported as
`file:line: reason` and skipped; an item whose image is missing is reported and skipped too — one
bad record never costs the rest of a run.

RCMU test set — one JSON object per line:
    {"id": "rcmu-001", "image": "../images/two_people.jpg", "kind": "V2C",
     "question": "What does the man on the left coach?", "answer": "He coaches ... [1].",
     "regions": [{"box": [x1, y1, x2, y2], "category": "person", "info": "...", "name": "Barack Obama"}]}
  kind ∈ V2C | C2V | UA-V2C | UA-C2V | RCID; boxes are pixel corners in the image; `answer` is the
  reference (required for the four RCVQA kinds, optional for RCID, whose question defaults to
  "Describe the image.").

RC&P-Bench — a gallery file and a questions file in one folder (`gallery.jsonl`, `questions.jsonl`):
    gallery:   {"id": "obama", "name": "Barack Obama", "category": "person", "info": "...",
                "photos": ["../images/reference/obama_obama.jpg", ...]}
    questions: {"id": "rcp-001", "image": "../images/two_people.jpg", "kind": "V2C",
                "question": "...", "options": {"A": "...", "B": "...", "C": "...",
                "D": "There is not enough information to answer the question"},
                "answer": "A", "target": "obama",
                "entities": [{"entity": "obama", "box": [x1, y1, x2, y2]}, ...]}
  `target` is the gallery entity the question needs (open-world scoring); `entities` are the gold
  boxes of the personalised entities in the photo (the oracle setting sends them with their info).

Yo'LLaVA as RAP packages it — a folder holding RAP's three JSON files:
    database.json               {"concept_dict": {"<bo>": {"name": "bo", "image": "x.png" | [...],
                                 "info": "...", "category": "dog"}, ...}}
    yollava-visual-qa.json      {"bo": {"<image path>": {"question": "... sks ...",
                                 "options": {"A": "...", "B": "..."}, "correct_answer": "A"}}}
    yollava-text-only-qa.json   {"bo": {"0": {"question": "...", "option": {...}, "correct_answer": "B"}}}
  `sks` in a question stands for the concept and is replaced by its name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.jsonl import BadLine, read_models
from rcmu_agent.prompt import DESCRIBE_QUESTION
from rcmu_agent.schema import Box, Region

__all__ = [
    "ANSWERABLE_KINDS",
    "NOT_ENOUGH_INFORMATION",
    "RCVQA_KINDS",
    "ContextRegion",
    "EntityBox",
    "GalleryEntity",
    "Loaded",
    "Problem",
    "RcmuItem",
    "RcpBench",
    "RcpQuestion",
    "YollavaConcept",
    "YollavaQuestion",
    "YollavaSet",
    "load_rcmu",
    "load_rcpbench",
    "load_yollava",
    "resolve",
]

NOT_ENOUGH_INFORMATION = "There is not enough information to answer the question"
RcmuKind = Literal["V2C", "C2V", "UA-V2C", "UA-C2V", "RCID"]
RCVQA_KINDS: tuple[str, ...] = ("V2C", "C2V", "UA-V2C", "UA-C2V")
ANSWERABLE_KINDS: tuple[str, ...] = ("V2C", "C2V")
_LETTER = re.compile(r"[A-Z]")
T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """A record that was skipped, and why; `str()` is `where: reason` (where = file:line or file:key)."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    @classmethod
    def from_bad_line(cls, bad: BadLine) -> Problem:
        return cls(f"{bad.path}:{bad.line}", bad.reason)


@dataclass
class Loaded(Generic[T]):
    """Usable items plus everything skipped on the way (malformed lines, missing images)."""

    items: list[T]
    problems: list[Problem] = field(default_factory=list)


def resolve(base: Path, relative: str) -> Path:
    """An image path from a dataset file: relative to that file's folder unless absolute."""
    path = Path(relative).expanduser()
    return path if path.is_absolute() else (base.parent / path).resolve()


class ContextRegion(BaseModel):
    """A region of the photo with its personal information (the caller-given context of SPEC §2)."""

    model_config = ConfigDict(extra="ignore")

    box: Box
    category: str = "object"
    info: str = Field(min_length=1)
    name: str | None = None  # for reports only; the model never sees it

    def region(self) -> Region:
        return Region(box=self.box, category=self.category, info=self.info)


class RcmuItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    image: str
    kind: RcmuKind
    question: str = DESCRIBE_QUESTION
    answer: str | None = None
    regions: list[ContextRegion] = Field(default_factory=list)
    image_path: Path | None = Field(default=None, exclude=True)  # filled by the loader

    @model_validator(mode="after")
    def _reference(self) -> RcmuItem:
        if self.kind != "RCID" and not (self.answer or "").strip():
            raise ValueError(f"a {self.kind} item needs a reference answer")
        return self


def _check_options(options: dict[str, str], answer: str) -> dict[str, str]:
    if len(options) < 2:
        raise ValueError("needs at least two options")
    for letter, text in options.items():
        if not _LETTER.fullmatch(letter):
            raise ValueError(f"option key {letter!r} is not one capital letter")
        if not str(text).strip():
            raise ValueError(f"option {letter} is empty")
    if answer not in options:
        raise ValueError(f"answer {answer!r} is not one of the options {sorted(options)}")
    return options


class GalleryEntity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    category: str = "person"
    info: str = Field(min_length=1)
    photos: list[str] = Field(min_length=1)
    photo_paths: list[Path] = Field(default_factory=list, exclude=True)


class EntityBox(BaseModel):
    entity: str
    box: Box


class RcpQuestion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    image: str
    kind: Literal["V2C", "C2V"]
    question: str = Field(min_length=1)
    options: dict[str, str]
    answer: str
    target: str
    entities: list[EntityBox] = Field(min_length=1)
    image_path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _valid(self) -> RcpQuestion:
        _check_options(self.options, self.answer)
        if self.target not in {e.entity for e in self.entities}:
            raise ValueError(f"target {self.target!r} has no box in `entities`")
        return self

    @property
    def not_enough_letter(self) -> str | None:
        """The option that says the question cannot be answered (open-world scoring needs it)."""
        for letter, text in self.options.items():
            if "not enough information" in text.lower():
                return letter
        return None


@dataclass
class RcpBench:
    gallery: dict[str, GalleryEntity]
    questions: list[RcpQuestion]
    problems: list[Problem]


class YollavaConcept(BaseModel):
    key: str  # the database key, e.g. "<bo>"
    name: str
    category: str = "object"
    info: str
    photo_paths: list[Path]


class YollavaQuestion(BaseModel):
    id: str
    concept: str  # the QA files' concept name, e.g. "bo"
    kind: Literal["visual", "text"]
    question: str
    options: dict[str, str]
    answer: str
    image_path: Path | None = None

    @model_validator(mode="after")
    def _valid(self) -> YollavaQuestion:
        _check_options(self.options, self.answer)
        return self


@dataclass
class YollavaSet:
    concepts: dict[str, YollavaConcept]  # by concept name ("bo")
    questions: list[YollavaQuestion]
    problems: list[Problem]


# ---- loaders -------------------------------------------------------------------------------------
def _with_image(path: Path, number: int, item: Any, problems: list[Problem]) -> bool:
    image = resolve(path, item.image)
    if not image.is_file():
        problems.append(Problem(f"{path}:{number}", f"image {image} does not exist"))
        return False
    item.image_path = image
    return True


def _unique(path: Path, number: int, key: str, seen: set[str], problems: list[Problem]) -> bool:
    if key in seen:
        problems.append(Problem(f"{path}:{number}", f"duplicate id {key!r}"))
        return False
    seen.add(key)
    return True


def load_rcmu(path: Path) -> Loaded[RcmuItem]:
    """The RCMU test set (format in the module docstring)."""
    path = Path(path)
    bad: list[BadLine] = []
    items: list[RcmuItem] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, item in read_models(path, RcmuItem, bad):
        if _unique(path, number, item.id, seen, problems) and _with_image(path, number, item, problems):
            items.append(item)
    problems = [Problem.from_bad_line(b) for b in bad] + problems
    return Loaded(items, sorted(problems, key=_order))


def _order(problem: Problem) -> tuple[str, int]:
    where, _, line = problem.where.rpartition(":")
    return (where, int(line)) if line.isdigit() else (problem.where, 0)


def load_rcpbench(path: Path) -> RcpBench:
    """RC&P-Bench from its folder (or its questions file; the gallery sits beside it)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    questions_file = path if path.is_file() else folder / "questions.jsonl"
    gallery_file = folder / "gallery.jsonl"
    bad: list[BadLine] = []
    problems: list[Problem] = []
    gallery: dict[str, GalleryEntity] = {}
    for number, entity in read_models(gallery_file, GalleryEntity, bad):
        paths = [resolve(gallery_file, p) for p in entity.photos]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            problems.append(Problem(f"{gallery_file}:{number}", f"photo {missing[0]} does not exist"))
        elif entity.id in gallery:
            problems.append(Problem(f"{gallery_file}:{number}", f"duplicate entity id {entity.id!r}"))
        else:
            gallery[entity.id] = entity.model_copy(update={"photo_paths": paths})
    questions: list[RcpQuestion] = []
    seen: set[str] = set()
    for number, question in read_models(questions_file, RcpQuestion, bad):
        unknown = [e.entity for e in question.entities if e.entity not in gallery]
        if unknown:
            problems.append(Problem(f"{questions_file}:{number}", f"entity {unknown[0]!r} is not in the gallery"))
            continue
        if _unique(questions_file, number, question.id, seen, problems) and _with_image(
            questions_file, number, question, problems
        ):
            questions.append(question)
    problems = [Problem.from_bad_line(b) for b in bad] + problems
    return RcpBench(gallery, questions, sorted(problems, key=_order))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", "point --data at the folder holding RAP's Yo'LLaVA files")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path} is not JSON: {exc}", "fix or re-download the file") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{path} should hold a JSON object", "use RAP's Yo'LLaVA files unchanged")
    return value


def load_yollava(path: Path) -> YollavaSet:
    """Yo'LLaVA's personalised QA in RAP's packaging (three JSON files in one folder)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    database = folder / "database.json"
    problems: list[Problem] = []
    concepts: dict[str, YollavaConcept] = {}
    for key, entry in _read_json(database).get("concept_dict", {}).items():
        where = f"{database}:{key}"
        try:
            photos = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
            paths = [resolve(database, p) for p in photos]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                problems.append(Problem(where, f"photo {missing[0]} does not exist"))
                continue
            concept = YollavaConcept(
                key=key,
                name=entry.get("name") or key.strip("<>"),
                category=entry.get("category") or "object",
                info=entry["info"],
                photo_paths=paths,
            )
        except (KeyError, TypeError, ValidationError) as exc:
            problems.append(Problem(where, f"malformed concept ({type(exc).__name__}: {exc})"[:200]))
            continue
        concepts[concept.name] = concept
    questions: list[YollavaQuestion] = []
    files: tuple[tuple[Literal["visual", "text"], str], ...] = (
        ("visual", "yollava-visual-qa.json"),
        ("text", "yollava-text-only-qa.json"),
    )
    for kind, name in files:
        file = folder / name
        if kind == "text" and not file.is_file():
            continue
        for concept_name, entries in _read_json(file).items():
            for key, entry in (entries or {}).items() if isinstance(entries, dict) else []:
                where = f"{file}:{concept_name}/{key}"
                question = _yollava_question(file, kind, concept_name, key, entry, concepts, where, problems)
                if question is not None:
                    questions.append(question)
    return YollavaSet(concepts, questions, problems)


def _yollava_question(
    file: Path,
    kind: Literal["visual", "text"],
    concept_name: str,
    key: str,
    entry: Any,
    concepts: dict[str, YollavaConcept],
    where: str,
    problems: list[Problem],
) -> YollavaQuestion | None:
    concept = concepts.get(concept_name)
    if concept is None:
        problems.append(Problem(where, f"concept {concept_name!r} is not in database.json"))
        return None
    try:
        options = entry.get("options") or entry.get("option")
        question = YollavaQuestion(
            id=f"{kind}/{concept_name}/{Path(key).stem if kind == 'visual' else key}",
            concept=concept_name,
            kind=kind,
            question=re.sub(r"\bsks\b", concept.name, str(entry["question"])),
            options={str(k): str(v) for k, v in options.items()},
            answer=str(entry["correct_answer"]),
            image_path=resolve(file, key) if kind == "visual" else None,
        )
    except (KeyError, TypeError, AttributeError, ValidationError) as exc:
        problems.append(Problem(where, f"malformed question ({type(exc).__name__}: {exc})"[:200]))
        return None
    if question.image_path is not None and not question.image_path.is_file():
        problems.append(Problem(where, f"image {question.image_path} does not exist"))
        return None
    return question
