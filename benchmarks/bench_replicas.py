"""Speed of the shared deployment (issue 25) against the embedded one, both measured in the same run.

Shared: RCMU_DATABASE_URL (a fresh database on a real PostgreSQL server this script starts, as the tests
do) and RCMU_CHROMA_URL (a real `chroma run` server started here), with a fresh empty RCMU_HOME. Embedded:
a fresh RCMU_HOME only. Both with faces only (no object detector, no CLIP, as the other benchmarks) and
the library's pixel work in this process (`library_workers=1`: worker start-up is not what differs). Every
section gives each mode a fresh home, database and Chroma server; the modes take turns call by call (the
first one alternating), so the load of a shared machine hits both alike. Ratios are shared / embedded;
the last column is what the shared services add to one call (or one item). After each section the script
lists what each mode left in its RCMU_HOME: in shared mode only caches may be there (issue 25's mode rule).

1. `ask` latency p50/p95, `context_only=True`: no model runs, so the figure is the storage and recognition
   path (the door, the photo into the vault, detection, recall, compose, cite) — one-off, and on a new
   thread each time (the checkpoint saved: SQLite under the home, or PostgreSQL). two_people.jpg is
   decoded every time (the photo cache cleared), as bench_agent does.
2. `remember` throughput (entities/s), one reference photo each: faces cut from the shared photos
   (bench_import's generated knowledge base), every one described by dlib and kept by the store.
3. `index` throughput (photos/s): `index_library` over the shared photos, each also mirrored
   (bench_library's folder), best of `--rounds`.
4. Recall p50/p95 (the graph's recall node) with `--stored` more entities, each with a 128-d face vector
   (random: the cost does not depend on the values) and a small reference photo, taught through
   `remember_many` in batches (its throughput is a row too, the one figure whose modes run one after the
   other rather than taking turns, so it carries the machine's drift); their text vectors are random as well
   (MiniLM over 100,000 sentences would take most of an hour on a loaded 2-core machine; the store's
   write path is otherwise the real one).

    python benchmarks/bench_replicas.py [--asks 40] [--entities 60] [--rounds 3] [--stored 100000] [--recalls 100]
    python benchmarks/bench_replicas.py --quick      # a smoke run (~5 min): a few of each, 2,000 stored

A size of 0 skips its section (`--asks 0 --entities 0 --rounds 0` runs the recall alone).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from _services import chroma_server, fresh_database, postgres_server
from bench_import import generate, recall_on_scene
from bench_library import build_folder

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENE = DATA / "faces" / "scenes" / "two_people.jpg"
REFERENCE = DATA / "faces" / "reference"
MODES = ("embedded", "shared")
COMMON: dict[str, Any] = {"object_detector": "", "image_embedding_model": "", "library_workers": 1}
PRESIDENTS = (("Barack Obama", "44th president", "obama_obama.jpg"), ("Joe Biden", "46th president", "biden_biden.jpg"))


def turns(i: int) -> Sequence[str]:
    """The modes in the order of round `i`: the first one alternates (caches, the allocator, a busy neighbour)."""
    return MODES if i % 2 == 0 else MODES[::-1]


Row = tuple[str, str, str, str, str]  # what, embedded, shared, shared / embedded, what shared adds to each call


def latency(what: str, embedded: Sequence[float], shared: Sequence[float], digits: int) -> Row:
    """p50 / p95 of both modes (samples in seconds), their ratios, and the p50 difference."""
    (e50, e95), (s50, s95) = (np.percentile(samples, [50, 95]) * 1000 for samples in (embedded, shared))
    return (
        f"{what} p50 / p95",
        f"{e50:.{digits}f} / {e95:.{digits}f} ms",
        f"{s50:.{digits}f} / {s95:.{digits}f} ms",
        f"{s50 / e50:.2f}x / {s95 / e95:.2f}x",
        f"{s50 - e50:+.{digits}f} ms (p50)",
    )


def throughput(what: str, unit: str, embedded: float, shared: float) -> Row:
    """Both rates (per second), their ratio, and the time shared adds to each item."""
    return (
        what,
        f"{embedded:.2f} {unit}/s",
        f"{shared:.2f} {unit}/s",
        f"{shared / embedded:.2f}x",
        f"{1000 / shared - 1000 / embedded:+.0f} ms per {unit}",
    )


def on_disk(settings: dict[str, Any], section: str) -> None:
    """What each mode's RCMU_HOME holds after a section: in shared mode only caches may be there."""
    for mode in MODES:
        home = settings[mode].home
        files = Counter(p.relative_to(home).parts[0] for p in home.rglob("*") if p.is_file()) if home.exists() else {}
        kept = ", ".join(f"{name} ({n} file{'s' * (n > 1)})" for name, n in sorted(files.items())) or "nothing"
        print(f"  {mode} RCMU_HOME after {section}: {kept}")


class Deployment:
    """One PostgreSQL server for the whole run; each section asks for a fresh pair of configurations."""

    def __init__(self, root: Path, postgres: str) -> None:
        self.root, self.postgres = root, postgres

    @contextlib.contextmanager
    def pair(self, label: str) -> Iterator[dict[str, Any]]:
        """Settings of both modes: a fresh embedded home, and a fresh shared one (an empty home, a new
        database, a new Chroma server, stopped when the section ends)."""
        from rcmu_agent import Settings

        with chroma_server(self.root / f"{label}-chroma") as chroma:
            yield {
                "embedded": Settings(home=self.root / f"{label}-embedded", **COMMON),
                "shared": Settings(
                    home=self.root / f"{label}-shared",
                    database_url=fresh_database(self.postgres),
                    chroma_url=chroma,
                    **COMMON,
                ),
            }


def teach_presidents(assistant: Any) -> None:
    for name, info, photo in PRESIDENTS:
        assistant.remember(name, info=info, photos=[REFERENCE / photo])


def ask_and_remember(deployment: Deployment, args: argparse.Namespace) -> list[Row]:
    from rcmu_agent import Assistant
    from rcmu_agent.errors import RcmuError

    rows = []
    with deployment.pair("teach") as settings:
        assistants = {mode: Assistant(settings[mode]) for mode in MODES}
        for assistant in assistants.values():
            teach_presidents(assistant)  # also the warm-up: dlib, MiniLM, Chroma and PostgreSQL opened

        def ask(mode: str, thread: str | None) -> Any:
            assistant = assistants[mode]
            assistant.parts.photos.clear()
            return assistant.ask("Who is on the left?", SCENE, context_only=True, thread_id=thread)

        variants = {"one-off": lambda i: None, "new thread": lambda i: f"bench-{i}"}
        for mode in MODES:
            for variant, thread in variants.items():
                named = sorted(r.name for r in ask(mode, thread("warm-up")).regions if r.name)
                assert named == ["Barack Obama", "Joe Biden"], (mode, variant, named)
        samples: dict[tuple[str, str], list[float]] = {(v, m): [] for v in variants for m in MODES}
        for i in range(args.asks):  # 0: the section is skipped
            for variant, thread in variants.items():
                for mode in turns(i):
                    start = time.perf_counter()
                    ask(mode, thread(i))
                    samples[variant, mode].append(time.perf_counter() - start)
        for variant in variants if args.asks else ():
            what = f"ask, {variant} ({args.asks} asks)"
            rows.append(latency(what, samples[variant, "embedded"], samples[variant, "shared"], 0))

        photos = sorted((generate(deployment.root / "kb", args.entities).parent / "photos").iterdir())
        seconds = dict.fromkeys(MODES, 0.0)
        taught = 0
        for i, photo in enumerate(photos):
            spent: dict[str, float] = {}
            try:
                for mode in turns(i):
                    start = time.perf_counter()
                    assistants[mode].remember(f"Person {i:05d}", info=f"Entry {i} of the benchmark.", photos=[photo])
                    spent[mode] = time.perf_counter() - start
            except RcmuError:  # no usable face in this crop: counted in neither mode
                continue
            taught += 1
            for mode in MODES:
                seconds[mode] += spent[mode]
        counts = {mode: len(assistants[mode].entities()) for mode in MODES}
        assert counts["embedded"] == counts["shared"] == taught + len(PRESIDENTS), counts
        if taught:
            embedded, shared = (taught / seconds[m] for m in MODES)
            rows.append(throughput(f"remember, 1 photo each ({taught} entities)", "entity", embedded, shared))
        on_disk(settings, "ask and remember")
    return rows


def indexing(deployment: Deployment, args: argparse.Namespace) -> Row:
    from rcmu_agent import Assistant

    folder = deployment.root / "library-photos"
    folder.mkdir()
    files = build_folder(folder)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    found: dict[str, set[tuple[int, int]]] = {mode: set() for mode in MODES}
    for round_ in range(args.rounds):
        with deployment.pair(f"index{round_}") as settings:
            for mode in turns(round_):
                assistant = Assistant(settings[mode])
                teach_presidents(assistant)  # recognition while indexing, as bench_library does
                assistant.library.store.text.embed(["warm-up"])  # MiniLM loaded before the clock starts
                start = time.perf_counter()
                report = assistant.index_library(folder)
                rates[mode].append(len(files) / (time.perf_counter() - start))
                found[mode].add((report.photos, report.faces))
            if round_ == 0:
                on_disk(settings, "index")
    assert found["embedded"] == found["shared"] and len(found["shared"]) == 1, found
    embedded, shared = (max(rates[m]) for m in MODES)
    photos, faces = found["shared"].pop()
    return throughput(f"index, best of {args.rounds} ({photos} photos, {faces} faces)", "photo", embedded, shared)


class RandomText:
    """MiniLM's stand-in while a large gallery is filled: random unit vectors of its size (the store's
    write path and its collections are the real ones; only the sentence model is skipped)."""

    def __init__(self, real: Any, seed: int) -> None:
        self.model_name = real.model_name
        self.dim = int(real.embed(["size"]).shape[1])
        self.rng = np.random.default_rng(seed)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.rng.normal(size=(len(texts), self.dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill(memory: Any, count: int, batch: int = 5000, seed: int = 1) -> float:
    """`count` entities with a face vector and a small reference photo each, through `remember_many`."""
    from rcmu_agent.memory import ReferencePhoto, Teaching

    rng = np.random.default_rng(seed)
    real, memory._text = memory._text, RandomText(memory._text, seed)
    start = time.perf_counter()
    try:
        for at in range(0, count, batch):
            faces = rng.normal(size=(min(batch, count - at), 128)) * 0.09  # dlib descriptors sit ~0.9 apart
            memory.remember_many(
                "default",
                [
                    Teaching(
                        f"Person {at + i:06d}",
                        f"Tester number {at + i}.",
                        "person",
                        (ReferencePhoto(f"photo-{at + i}".encode(), ".jpg", face_descriptor=face.tolist()),),
                    )
                    for i, face in enumerate(faces)
                ],
            )
    finally:
        memory._text = real
    return time.perf_counter() - start


def recall(deployment: Deployment, args: argparse.Namespace) -> list[Row]:
    from rcmu_agent import Assistant

    with deployment.pair("recall") as settings:
        steps: dict[str, Callable[[], Any]] = {}
        rates: dict[str, float] = {}
        for mode in MODES:
            assistant = Assistant(settings[mode])
            teach_presidents(assistant)
            rates[mode] = args.stored / fill(assistant.parts.memory, args.stored)
            step, state = recall_on_scene(assistant)
            steps[mode] = functools.partial(step, state)
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(args.recalls):
            for mode in turns(i):
                start = time.perf_counter()
                steps[mode]()
                samples[mode].append(time.perf_counter() - start)
        on_disk(settings, "recall")
    what = f"recall node at {args.stored + len(PRESIDENTS):,} entities ({args.recalls} recalls)"
    filled = f"remember_many, {args.stored:,} in batches of 5,000"
    return [
        throughput(filled, "entity", rates["embedded"], rates["shared"]),
        latency(what, samples["embedded"], samples["shared"], 1),
    ]


def table(rows: Sequence[Row]) -> str:
    head = ("", "embedded", "shared (PostgreSQL + Chroma server)", "shared / embedded", "shared adds")
    widths = [max(len(row[c]) for row in (head, *rows)) for c in range(5)]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (head, *rows))
    return "\n".join(lines)


def main() -> None:
    quick = "--quick" in sys.argv[1:]  # smaller defaults; a size given explicitly still wins
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 asks, 6 entities, 1 round, 2,000 stored")
    parser.add_argument("--asks", type=int, default=4 if quick else 40)
    parser.add_argument("--entities", type=int, default=6 if quick else 60, help="remember: reference photos made")
    parser.add_argument("--rounds", type=int, default=1 if quick else 3, help="index: best of rounds; 0 skips it")
    parser.add_argument("--stored", type=int, default=2000 if quick else 100_000, help="recall: 0 skips it")
    parser.add_argument("--recalls", type=int, default=10 if quick else 100)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rcmu-bench-replicas-"))
    rows: list[Row] = []
    try:
        with postgres_server() as postgres:
            deployment = Deployment(root, postgres)
            print(f"{os.cpu_count()} CPU(s); each figure with its embedded baseline measured in the same run")
            rows += ask_and_remember(deployment, args)
            print(table(rows), flush=True)
            if args.rounds > 0:
                rows.append(indexing(deployment, args))
                print(table(rows[-1:]), flush=True)
            if args.stored > 0:
                rows += recall(deployment, args)
    finally:
        print(f"\n{table(rows)}", flush=True)  # what was measured, even when a later section failed
        shutil.rmtree(root, ignore_errors=True)  # 100,000 reference photos take a while to delete


if __name__ == "__main__":
    main()
