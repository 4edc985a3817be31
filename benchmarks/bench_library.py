"""Speed of the photo library, against the baselines issue 5 names.

1. Indexing throughput (photos/s) of `index_library` over a folder of real photos (the shared photos,
   each also mirrored so the contents are distinct) against bare dlib over the same files in the same
   run (read, decode, HOG detection, 5-point alignment, 128-d descriptors). Target: ratio >= 0.85.
   No CLIP model is configured (bare dlib computes no image embedding either).
1b. The same on 12 MP phone-sized photos (the shared face photos cropped to 4:3 and upscaled to
   4032x3024, each also mirrored), `index_library` with its default workers (one per core) against bare
   dlib in one process doing the same work (upsample 0, as the detector chooses at this size; target
   >= 1.7x on 2 cores), and against bare dlib at upsample 1 (what every 12 MP photo cost before).
2. Search p50 over 10,000 indexed photos (records written through the library's own commit path with
   random descriptors and text vectors, not dlib), for person pairs, person + text, text, dates and all
   combined. Target: <= 50 ms.

    python benchmarks/bench_library.py [--photos 10000] [--queries 40] [--rounds 3] [--phone-photos 24]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_real_size's phone photo

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REFERENCE = DATA / "faces" / "reference"


def build_folder(folder: Path) -> list[Path]:
    from PIL import Image, ImageOps

    photos = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    out = []
    for n, photo in enumerate(photos):
        with Image.open(photo) as img:
            rgb = img.convert("RGB")
            for tag, version in (("a", rgb), ("b", ImageOps.mirror(rgb))):
                target = folder / f"{n:02d}{tag}_{photo.stem}.jpg"
                version.save(target, format="JPEG", quality=92)
                out.append(target)
    return out


def bare_dlib(files: list[Path]) -> float:
    from rcmu_agent.faces import FaceDetector, FaceEncoder
    from rcmu_agent.images import load_image

    detector, encoder = FaceDetector(), FaceEncoder()
    start = time.perf_counter()
    for path in files:
        image = load_image(path)
        encoder.encode(image, detector.detect(image))
    return len(files) / (time.perf_counter() - start)


def build_phone_folder(folder: Path, count: int) -> list[Path]:
    """`count` distinct 12 MP JPEGs from the shared face photos (cropped to 4:3, upscaled, mirrored)."""
    from bench_real_size import phone_photo
    from PIL import ImageOps

    sources = sorted(p for p in (DATA / "faces").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})
    out: list[Path] = []
    for n in range(count):
        photo = phone_photo(sources[n // 2 % len(sources)])
        target = folder / f"{n:03d}.jpg"
        (ImageOps.mirror(photo) if n % 2 else photo).save(target, format="JPEG", quality=92)
        out.append(target)
    return out


def raw_dlib(files: list[Path], upsample: int) -> float:
    """Bare dlib at a fixed upsampling in this one process: decode, HOG, alignment, descriptors."""
    import dlib

    from rcmu_agent.faces import FACE_DESCRIPTOR_MODEL, model_file
    from rcmu_agent.images import load_image

    hog = dlib.get_frontal_face_detector()
    aligner = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    resnet = dlib.face_recognition_model_v1(str(model_file(f"{FACE_DESCRIPTOR_MODEL}.dat")))
    start = time.perf_counter()
    for path in files:
        array = np.asarray(load_image(path))
        shapes = dlib.full_object_detections()
        for rect in hog(array, upsample):
            shapes.append(aligner(array, rect))
        resnet.compute_face_descriptor(array, shapes)
    return len(files) / (time.perf_counter() - start)


def parallel_dlib(files: list[Path], upsample: int, processes: int) -> float:
    """`raw_dlib` in `processes` spawned processes at once, start-up included: what this machine's free
    cores allow right now (on an idle 2-core machine bare dlib ran 1.91x as fast in 2 processes)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(raw_dlib, [files[i::processes] for i in range(processes)], [upsample] * processes))
    return len(files) / (time.perf_counter() - start)


def phone_indexing(tmp: Path, count: int, rounds: int) -> None:
    folder = tmp / "phone"
    folder.mkdir()
    files = build_phone_folder(folder, count)
    raw_dlib(files[:1], 0)
    bares, indexes, parallels = [], [], []
    cores = os.cpu_count() or 1
    for round_ in range(rounds):
        bares.append(raw_dlib(files, 0))
        rate, report = indexing(files, folder, tmp / f"home-phone-{round_}")
        indexes.append(rate)
        parallels.append(parallel_dlib(files, 0, cores))
    before = raw_dlib(files[:4], 1)  # upsample 1 costs ~5 s a photo: a sample gives the rate
    bare, indexed, parallel = max(bares), max(indexes), max(parallels)
    print(f"\nindexing 12 MP photos: {len(files)} photos ({report.faces} faces), {os.cpu_count()} cores, "
          f"best of {rounds} interleaved rounds")  # fmt: skip
    print(f"  bare dlib, one process, upsample 1 (before):   {before:.3f} photos/s")
    print(f"  bare dlib, one process, upsample 0 (same work): {bare:.3f} photos/s")
    print(f"  bare dlib, {cores} processes (the machine's ceiling now):  {parallel:.3f} photos/s "
          f"({parallel / bare:.2f}x one process)")  # fmt: skip
    print(f"  index_library, workers:                       {indexed:.3f} photos/s")
    print(f"  ratio to the same work in one process {indexed / bare:.2f} (target >= 1.7 on 2 cores); "
          f"to bare dlib in {cores} processes {indexed / parallel:.2f}; to before {indexed / before:.2f}")  # fmt: skip


def indexing(files: list[Path], folder: Path, home: Path) -> tuple[float, Any]:
    from rcmu_agent import Assistant, Settings

    assistant = Assistant(Settings(home=home, object_detector="", image_embedding_model=""))
    assistant.remember("Obama", info="44th president", photos=[REFERENCE / "obama_obama.jpg"])
    assistant.remember("Biden", info="46th president", photos=[REFERENCE / "biden_biden.jpg"])
    assistant.library.store.text.embed(["warm-up"])  # MiniLM loaded before the clock starts (bare dlib has no model)
    start = time.perf_counter()
    report = assistant.index_library(folder)
    return len(files) / (time.perf_counter() - start), report


def synthesize(home: Path, photos: int, people: int, seed: int = 0) -> Any:
    """`photos` records through `_commit_new` (the indexer's own write path), dlib and MiniLM skipped."""
    from PIL import Image

    from rcmu_agent import Assistant, Settings
    from rcmu_agent.memory.library._cluster_index import ClusterIndex
    from rcmu_agent.schema import Region

    rng, prng = np.random.default_rng(seed), random.Random(seed)
    assistant = Assistant(Settings(home=home, object_detector="", image_embedding_model=""))
    library = assistant.library
    names = [f"Person{i} Surname{i}" for i in range(people)]
    canvas = Image.new("RGB", (1200, 800))
    clusters = ClusterIndex("default", 0.0)  # threshold 0: every unknown face is its own cluster
    start = time.perf_counter()
    base = datetime(2015, 1, 1)
    for n in range(photos):
        k = prng.randint(0, 4)
        regions, named = [], []
        for j in range(k):
            x = 50 + j * 260
            regions.append(
                Region(box=(x, 100, x + 200, 300), category="person", source="face",
                       descriptor=rng.normal(0, 0.1, 128).tolist())
            )  # fmt: skip
            who = prng.randrange(people) if prng.random() < 0.8 else None
            named.append(None if who is None else (f"e{who}", names[who], 0.3))
        taken = base + timedelta(hours=prng.randrange(10 * 365 * 24))
        text_vector = rng.normal(size=(1, 384)).astype(np.float32)
        text_vector /= np.linalg.norm(text_vector)
        computed = {
            "image": canvas,
            "taken_at": taken,
            "place": None,
            "regions": regions,
            "named": named,
            "context": f"synthetic photo {n}",
            "image_vector": None,
            "text_vectors": text_vector,
        }
        photo_id = f"{n:024x}"
        row = ("default", "/synthetic", f"p{n}.jpg", photo_id, 1000, n)
        library.indexer._commit_new("default", "/synthetic", f"p{n}.jpg", None, row, photo_id * 2, computed, clusters)
    library.store.db.execute("INSERT OR REPLACE INTO meta VALUES ('default', 'memory_stamp', '')")  # no memory taught
    return assistant, library.search.known_people("default"), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phone-photos", type=int, default=24, help="12 MP photos for 1b; 0 skips it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        files = build_folder(folder)
        bare_dlib(files[:1])  # dlib weights loaded before either clock starts
        bares, indexes = [], []
        for round_ in range(args.rounds):  # interleaved, best of each: the machine's load hits both alike
            bares.append(bare_dlib(files))
            rate, report = indexing(files, folder, Path(tmp) / f"home-index-{round_}")
            indexes.append(rate)
        bare, indexed = max(bares), max(indexes)
        print(f"indexing: {len(files)} photos ({report.faces} faces), best of {args.rounds} interleaved rounds")
        print(f"  bare dlib (decode + detect + descriptors): {bare:.2f} photos/s")
        print(f"  index_library:                             {indexed:.2f} photos/s")
        print(f"  ratio {indexed / bare:.3f} (target >= 0.85)")
        if args.phone_photos:
            phone_indexing(Path(tmp), args.phone_photos, max(args.rounds - 1, 1))

        assistant, names, seconds = synthesize(Path(tmp) / "home-search", args.photos, args.people)
        print(f"\nsearch over {args.photos} photos ({args.people} people; written in {seconds:.0f} s)")
        prng = random.Random(1)
        assistant.search_photos(text="warm-up", limit=10)  # vectors read from Chroma once, MiniLM loaded
        kinds = {
            "person pair": lambda: {"people": prng.sample(names, 2)},
            "person + text": lambda: {"people": [prng.choice(names)], "text": "at the beach with friends"},
            "text": lambda: {"text": prng.choice(["birthday party", "snow in the mountains", "a dog"])},
            "date range": lambda: {"since": datetime(2018, 1, 1), "until": datetime(2018, 6, 30)},
            "all combined": lambda: {
                "people": [prng.choice(names)], "text": "dinner", "since": datetime(2016, 1, 1),
                "until": datetime(2022, 12, 31),
            },
        }  # fmt: skip
        everything: list[float] = []
        for kind, make in kinds.items():
            samples = []
            for _ in range(args.queries):
                query = make()
                start = time.perf_counter()
                assistant.search_photos(limit=10, **query)
                samples.append(time.perf_counter() - start)
            everything += samples
            print(f"  {kind:14s} p50 {statistics.median(samples) * 1000:6.1f} ms   max {max(samples) * 1000:6.1f} ms")
        p50 = statistics.median(everything) * 1000
        print(f"  overall p50 {p50:.1f} ms (target <= 50 ms): ratio to target {p50 / 50:.2f}")


if __name__ == "__main__":
    main()
