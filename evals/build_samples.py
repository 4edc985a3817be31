"""Build the small real sample sets in `samples/` from the shared photos (run once; the output is committed).

    python -m rcmu_agent.evals.build_samples /path/to/shared/data [OUT]

What the samples say — people and their made-up facts, hand-drawn object boxes, questions and
answers — lives in `samples/source.toml`; this script only joins it with the photos. Photos are
downscaled (longest side 640 px) and copied, so the samples travel with the package; face boxes come
from the real dlib detector on those copies. The output is deterministic: re-running it on the same
photos rewrites the committed files byte for byte (a test checks that).
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from rcmu_agent.evals.datasets import NOT_ENOUGH_INFORMATION, load_rcmu, load_rcpbench, load_yollava
from rcmu_agent.files import atomic_write

__all__ = ["SAMPLES", "SOURCE", "build", "load_source", "main"]

SAMPLES = Path(__file__).resolve().parent / "samples"
SOURCE = SAMPLES / "source.toml"


def load_source(path: Path = SOURCE) -> dict[str, Any]:
    """The sample facts, boxes and questions, as written in `source.toml`."""
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _shrink(image: Any, max_side: int) -> Any:
    from PIL import Image

    image = image.convert("RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return image


def _save_jpeg(image: Any, path: Path) -> None:
    atomic_write(path, lambda handle: image.save(handle, format="JPEG", quality=90))


def _montage(data: Path, montage: dict[str, Any]) -> Any:
    """The reference photos side by side, each scaled to the montage's height."""
    from PIL import Image

    height = montage["height"]
    parts = []
    for name in montage["parts"]:
        part = Image.open(data / "faces" / "reference" / name).convert("RGB")
        parts.append(part.resize((round(part.width * height / part.height), height), Image.Resampling.LANCZOS))
    both = Image.new("RGB", (sum(p.width for p in parts), height))
    left = 0
    for part in parts:
        both.paste(part, (left, 0))
        left += part.width
    return both


def _copy_images(source: dict[str, Any], data: Path, out: Path) -> None:
    from PIL import Image

    max_side, images = source["max_side"], source["images"]
    for person in source["people"].values():
        for name in person["references"]:
            image = _shrink(Image.open(data / "faces" / "reference" / name), max_side)
            _save_jpeg(image, out / "images" / "reference" / Path(name).with_suffix(".jpg").name)
    for name in images["scenes"]:
        _save_jpeg(_shrink(Image.open(data / "faces" / "scenes" / name), max_side), out / "images" / name)
    for name in images["objects"]:
        image = Image.open(data / "objects" / name).convert("RGB")
        _save_jpeg(image, out / "images" / Path(name).with_suffix(".jpg").name)
    montage = images["montage"]
    _save_jpeg(_shrink(_montage(data, montage), max_side), out / "images" / montage["name"])


def _scene_boxes(source: dict[str, Any], out: Path) -> dict[str, list[tuple[str, list[float]]]]:
    """Each sample photo's (entity, box) pairs, left to right: people get the dlib face box at their
    position on the copied photo, objects their hand-drawn box."""
    from rcmu_agent.faces import FaceDetector
    from rcmu_agent.images import load_image

    detector = FaceDetector()
    scenes: dict[str, list[tuple[str, list[float]]]] = {}
    for image, entities in source["scenes"].items():
        people = [key for key in entities if key in source["people"]]
        faces = []
        if people:
            found = detector.detect(load_image(out / "images" / image))
            faces = [list(r.box) for r in sorted(found, key=lambda r: r.box[0])]
            if len(faces) != len(people):
                raise ValueError(f"{image}: dlib found {len(faces)} faces, the scene lists {len(people)} people")
        boxes = iter(faces)
        scenes[image] = [
            (key, next(boxes) if key in source["people"] else source["objects"][key]["box"]) for key in entities
        ]
    return scenes


def _region(source: dict[str, Any], key: str, box: list[float]) -> dict[str, Any]:
    """One RCMU region: a person's info is their name followed by their facts."""
    if key in source["people"]:
        person = source["people"][key]
        return {"box": box, "category": "person", "info": f"{person['name']} {person['info']}", "name": person["name"]}
    thing = source["objects"][key]
    return {"box": box, "category": thing["category"], "info": thing["info"], "name": thing["name"]}


def _rcmu(source: dict[str, Any], scenes: dict[str, list[tuple[str, list[float]]]]) -> list[dict[str, Any]]:
    items = []
    for number, row in enumerate(source["rcmu"], start=1):
        item: dict[str, Any] = {"id": f"rcmu-{number:03d}", "image": f"../images/{row['image']}", "kind": row["kind"]}
        if "question" in row:
            item["question"] = row["question"]
        item["answer"] = row["answer"]
        item["regions"] = [_region(source, key, box) for key, box in scenes[row["image"]]]
        items.append(item)
    return items


def _reference_paths(person: dict[str, Any]) -> list[str]:
    return [f"../images/reference/{Path(n).with_suffix('.jpg').name}" for n in person["references"]]


def _rcpbench(
    source: dict[str, Any], scenes: dict[str, list[tuple[str, list[float]]]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    gallery = [
        {
            "id": key,
            "name": person["name"],
            "category": "person",
            "info": f"{person['name']} {person['info']}",
            "photos": _reference_paths(person),
        }
        for key, person in source["people"].items()
    ]
    questions = []
    for number, row in enumerate(source["rcpbench"], start=1):
        options = [*row["options"], NOT_ENOUGH_INFORMATION]
        questions.append(
            {
                "id": f"rcp-{number:03d}",
                "image": f"../images/{row['image']}",
                "kind": row["kind"],
                "question": row["question"],
                "options": {chr(65 + i): text for i, text in enumerate(options)},
                "answer": row["answer"],
                "target": row["target"],
                "entities": [{"entity": key, "box": box} for key, box in scenes[row["image"]]],
            }
        )
    return gallery, questions


def _yollava(source: dict[str, Any]) -> dict[str, Any]:
    concepts = {
        f"<{key}>": {
            "name": key,
            "image": _reference_paths(person),
            "info": f"<{key}> ({person['name']}) {person['info']}",
            "category": "person",
        }
        for key, person in source["people"].items()
    }
    return {
        "database.json": {"concept_dict": concepts},
        "yollava-visual-qa.json": source["yollava"]["visual"],
        "yollava-text-only-qa.json": source["yollava"]["text"],
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def build(data: Path, out: Path = SAMPLES, source_file: Path = SOURCE) -> None:
    """Write images/, rcmu/, rcpbench/ and yollava/ under `out`, then check each loads cleanly."""
    source = load_source(source_file)
    _copy_images(source, data, out)
    scenes = _scene_boxes(source, out)
    _write_jsonl(out / "rcmu" / "test.jsonl", _rcmu(source, scenes))
    gallery, questions = _rcpbench(source, scenes)
    _write_jsonl(out / "rcpbench" / "gallery.jsonl", gallery)
    _write_jsonl(out / "rcpbench" / "questions.jsonl", questions)
    for name, value in _yollava(source).items():
        atomic_write(out / "yollava" / name, json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    # every file must load cleanly with the public loaders
    problems = [
        *load_rcmu(out / "rcmu" / "test.jsonl").problems,
        *load_rcpbench(out / "rcpbench").problems,
        *load_yollava(out / "yollava").problems,
    ]
    if problems:
        raise ValueError(f"the built samples do not load cleanly: {problems}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    data = Path(args[0]) if args else Path("../shared/data")
    build(data, Path(args[1]) if len(args) > 1 else SAMPLES)


if __name__ == "__main__":
    main()
