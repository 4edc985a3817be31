"""Speed of `import`, against the baselines issue 15 names.

1. Import throughput (entities/s) of a knowledge base of `--entities` people, one reference photo each,
   generated from the shared faces (crops around the face with random margins, flips, rescales), against
   bare dlib over the same files in the same run (read, decode, HOG detection, 5-point alignment, 128-d
   descriptor). The import runs in this process (`--workers 0`), with one worker process and with one
   per CPU, each right after its own bare-dlib pass (the baseline of its ratio).
   Targets: >= 0.8x single-process, >= 1.5x with workers on 2 cores.
2. Recall p50 (the graph's recall node: face matching plus names in the question) with `--stored`
   entities, their vectors inserted directly into Chroma (no dlib, no MiniLM). Target: <= 30 ms.

    python benchmarks/bench_import.py [--entities 2000] [--stored 100000] [--recalls 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_agent import node_runner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENE = DATA / "faces" / "scenes" / "two_people.jpg"
REFERENCE = DATA / "faces" / "reference"


def generate(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` photos of faces cut from every shared photo of people, each flipped, cropped and rescaled
    differently; returns the knowledge-base JSONL naming them."""
    from PIL import Image, ImageOps

    from rcmu_agent.faces import FaceDetector

    rng = np.random.default_rng(seed)
    detector = FaceDetector()
    faces: list[tuple[Image.Image, tuple[float, float, float, float]]] = []
    for path in sorted((DATA / "faces").rglob("*.jp*g")):
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
        faces.extend((rgb, region.box) for region in detector.detect(rgb))
    (folder / "photos").mkdir(parents=True)
    lines = []
    for n in range(count):
        image, (x1, y1, x2, y2) = faces[n % len(faces)]
        side = max(x2 - x1, y2 - y1)
        margin = side * rng.uniform(0.4, 1.0)
        box = (max(x1 - margin, 0), max(y1 - margin, 0), min(x2 + margin, image.width), min(y2 + margin, image.height))
        crop = image.crop(tuple(round(v) for v in box))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        scale = rng.uniform(110, 170) / side  # the face ends up 110-170 px wide
        crop = crop.resize((max(round(crop.width * scale), 1), max(round(crop.height * scale), 1)))
        crop.save(folder / "photos" / f"{n:05d}.jpg", quality=90)
        lines.append(
            {"name": f"Person {n:05d}", "info": f"Entry {n} of the knowledge base.", "photos": [f"photos/{n:05d}.jpg"]}
        )
    kb = folder / "kb.jsonl"
    kb.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return kb


def bare_dlib(files: list[Path]) -> float:
    """Entities/s of dlib alone: decode, HOG, 5-point alignment, descriptor of the largest face."""
    import dlib
    from PIL import Image

    from rcmu_agent.faces import model_file

    detector = dlib.get_frontal_face_detector()
    aligner = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    resnet = dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
        rects = sorted(detector(array, 1), key=lambda r: -r.area())
        if rects:
            resnet.compute_face_descriptor(array, aligner(array, rects[0]), 1)
    return len(files) / (time.perf_counter() - start)


def importing(kb: Path, home: Path, workers: int) -> tuple[float, Any]:
    from rcmu_agent import Assistant, Settings

    assistant = Assistant(Settings(home=home, object_detector="", image_embedding_model=""))
    assistant.parts.memory._text.embed(["warm-up"])  # MiniLM loaded before the clock (bare dlib has no model)
    assistant.parts.memory.users()  # Chroma opened too
    start = time.perf_counter()
    report = assistant.import_memory(kb, workers=workers)
    return report.rows / (time.perf_counter() - start), report  # every row is detected, stored or not


def fill(memory: Any, count: int, seed: int = 1) -> None:
    """`count` entities with a face vector each, written straight into the collections the store reads."""
    from rcmu_agent.memory._records import entity_meta, new_stamp
    from rcmu_agent.schema import Entity

    rng = np.random.default_rng(seed)
    for at in range(0, count, 5000):
        n = min(5000, count - at)
        entities = [
            Entity(id=f"bulk{at + i:07d}", user="default", name=f"Person {at + i:06d}", info=f"Tester {at + i}.")
            for i in range(n)
        ]
        text = rng.normal(size=(n, 384)).astype(np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        memory._col("entities").add(
            ids=[e.id for e in entities],
            embeddings=text,
            documents=[e.info for e in entities],
            metadatas=[entity_meta(e) for e in entities],
        )
        faces = (rng.normal(size=(n, 128)) * 0.09).astype(np.float32)  # dlib descriptors sit ~0.9 apart
        memory._col("faces").add(
            ids=[f"{e.id}:bulk" for e in entities],
            embeddings=faces,
            metadatas=[{"user": "default", "entity_id": e.id, "category": "person", "photo": ""} for e in entities],
        )
    profile = memory._profile("default")
    memory._col("profiles").upsert(ids=["default"], embeddings=[[1.0]], metadatas=[{**profile, "stamp": new_stamp()}])


def recall_on_scene(assistant: Any) -> tuple[Any, dict[str, Any]]:
    """The graph's recall step over the two-person scene (detected once), warmed up and checked to find both
    presidents; with the state it runs on, so a caller times `step(state)` alone."""
    from rcmu_agent._nodes import Nodes
    from rcmu_agent.door import Inbound

    nodes = Nodes(assistant.parts, local_caller=True)
    state: dict[str, Any] = {
        "user": "default",
        "question": "Is Joe Biden next to Barack Obama?",
        "photo": assistant.parts.photos.ingest("default", Inbound(SCENE.read_bytes())),
        "turn": {"regions": None},
    }
    state = node_runner(nodes, "detect", "default")(state)
    step = node_runner(nodes, "recall", "default")
    found = step(state)  # also the warm-up: the references are read once
    assert sorted(e["name"] for e in found["entries"] if e["name"]) == ["Barack Obama", "Joe Biden"], found
    return step, state


def recall(home: Path, stored: int, runs: int) -> tuple[float, float]:
    from rcmu_agent import Assistant, Settings

    assistant = Assistant(Settings(home=home, object_detector="", image_embedding_model=""))
    assistant.remember("Barack Obama", info="44th president", photos=[REFERENCE / "obama_obama.jpg"])
    assistant.remember("Joe Biden", info="46th president", photos=[REFERENCE / "biden_biden.jpg"])
    start = time.perf_counter()
    fill(assistant.parts.memory, stored)
    print(f"\nstored {stored} more entities (vectors inserted directly) in {time.perf_counter() - start:.1f} s")
    recall_step, state = recall_on_scene(assistant)
    samples = []
    for _ in range(runs):
        begin = time.perf_counter()
        recall_step(state)
        samples.append(time.perf_counter() - begin)
    p50, p95 = np.percentile(samples, [50, 95]) * 1000
    return float(p50), float(p95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=2000)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--recalls", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the 'with workers' run")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rcmu-bench-import-"))
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> None:
    if args.entities > 0:
        throughput(args, root)
    if args.stored > 0:
        p50, p95 = recall(root / "home-recall", args.stored, args.recalls)
        print(
            f"recall node with {args.stored + 2} entities: p50 {p50:.2f} ms, p95 {p95:.2f} ms   (target p50 <= 30 ms)"
        )


def throughput(args: argparse.Namespace, root: Path) -> None:
    kb = generate(root / "kb", args.entities)
    files = sorted((root / "kb" / "photos").iterdir())
    print(f"{len(files)} reference photos generated from the shared faces ({os.cpu_count()} CPU(s))")
    # Each import is paired with a bare-dlib pass right before it: the load of a shared machine drifts
    # by 2x over minutes, so only a baseline measured next to the import gives a meaningful ratio.
    ratios = {}
    for workers in sorted({0, 1, args.workers}):
        bare = bare_dlib(files)
        rate, report = importing(kb, root / f"home-{workers}", workers)
        ratios[workers] = rate / bare
        label = "in this process" if workers == 0 else f"{workers} worker process(es)"
        print(
            f"  rcmu import, {label:<26} {rate:7.2f} entities/s   bare dlib just before {bare:7.2f}/s   "
            f"ratio {rate / bare:5.2f}x   ({report.added} added, {len(report.failed)} without a usable face)"
        )
    print(
        f"  targets: single-process >= 0.8x (got {ratios[0]:.2f}x in-process, {ratios[1]:.2f}x with one worker); "
        f"with workers >= 1.5x (got {ratios[args.workers]:.2f}x)"
    )


if __name__ == "__main__":
    main()
