"""Region-annotated source records, the input of the RCMU construction pipeline.

A source record is one image with its objects (pixel box, category, referring expressions) and an
optional grounded caption. Two ways in:

- a plain JSONL of `SourceRecord` lines (what `rcmu data build` also accepts from any other dataset);
- RefCOCO / RefCOCO+ / RefCOCOg in the layout of the `refer` toolkit: `refs(umd).p` (a pickle of
  ref dicts; a JSON export of the same list is accepted too) beside `instances.json` (COCO: images,
  annotations with `[x, y, w, h]` boxes, categories), images under `--images`.
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.jsonl import BadLine, read_models
from rcmu_agent.schema import Category

__all__ = ["SourceObject", "SourceRecord", "load_refcoco", "load_sources"]


class SourceObject(BaseModel):
    box: tuple[float, float, float, float]  # pixels x1, y1, x2, y2
    category: Category
    expressions: list[str] = Field(default_factory=list)  # how it looks: "the dog behind the bench"


class SourceRecord(BaseModel):
    id: str
    image: str
    objects: list[SourceObject]
    caption: str | None = None  # a grounded caption, when the dataset has one


def load_sources(path: Path, bad: list[BadLine], *, images: Path | None = None) -> list[SourceRecord]:
    """Source records from a JSONL file or from a refer-style annotation file (`.p` / refs `.json`)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"annotation file {path} does not exist", "check the path")
    if path.suffix == ".jsonl":
        records = [r for _, r in read_models(path, SourceRecord, bad)]
    else:
        records = list(load_refcoco(path, images=images))
    if images is not None:
        records = [r.model_copy(update={"image": str(images / r.image)}) if not Path(r.image).is_absolute() else r
                   for r in records]  # fmt: skip
    return records


class _PlainUnpickler(pickle.Unpickler):
    """refs(umd).p holds only lists, dicts and strings: refuse anything that would run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an annotation pickle")


def _read_refs(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".json":
            refs = json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open("rb") as handle:
                refs = _PlainUnpickler(handle, encoding="latin1").load()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot read annotation file {path}: {type(exc).__name__}: {exc}"[:300],
            "give the refer toolkit's refs(umd).p (or a JSON list of refs) or a JSONL of source records",
        ) from None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise InvalidInputError(f"{path} is not a list of refs", "give refs(umd).p from the refer toolkit")
    return refs


def _read_instances(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", "put the refer toolkit's instances.json beside the refs file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"images": data["images"], "annotations": data["annotations"], "categories": data["categories"]}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"cannot read COCO instances {path}: {type(exc).__name__}: {exc}"[:300],
            "it needs `images`, `annotations` and `categories`",
        ) from None


def load_refcoco(refs_path: Path, *, instances: Path | None = None, images: Path | None = None,
                 split: str | None = None) -> Iterator[SourceRecord]:  # fmt: skip
    """One source record per image: its referred objects, each with all of its expressions."""
    refs_path = Path(refs_path)
    refs = _read_refs(refs_path)
    coco = _read_instances(instances or refs_path.with_name("instances.json"))
    image_files = {img["id"]: img["file_name"] for img in coco["images"]}
    anns = {ann["id"]: ann for ann in coco["annotations"]}
    categories = {cat["id"]: cat["name"] for cat in coco["categories"]}
    by_image: dict[int, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for ref in refs:
        if split is not None and ref.get("split") != split:
            continue
        sentences = [s.get("sent") or s.get("raw", "") for s in ref.get("sentences", [])]
        by_image[ref["image_id"]][ref["ann_id"]] += [" ".join(s.split()) for s in sentences if s and s.strip()]
    for image_id in sorted(by_image):
        objects = []
        for ann_id, expressions in by_image[image_id].items():
            ann = anns.get(ann_id)
            if ann is None:
                continue
            x, y, w, h = ann["bbox"]
            category = categories.get(ann["category_id"], "object")
            objects.append(SourceObject(box=(x, y, x + w, y + h), category=category, expressions=expressions))
        if objects and image_id in image_files:
            name = image_files[image_id]
            yield SourceRecord(id=f"coco-{image_id}", image=str(images / name) if images else name, objects=objects)
