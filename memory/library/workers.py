"""The pixel work of `rcmu index` — decode, EXIF, faces, objects, CLIP — in worker processes.

dlib's detector is single-threaded and holds the GIL-free part of the work, so on a machine with N
cores one process leaves N-1 idle: bare dlib in 2 processes ran 1.91x as fast as in one. Each
worker builds its own pixel-only `Recognizer` once (models load on first use and stay for the
run) and calls the same `see` the agent calls; the indexing process stays the single writer —
recognition against the memory, the sidecar rows and the vectors are all committed there, one photo
per transaction, in the order the files were walked.

Workers are spawned, not forked: the indexing process may already hold threads (Chroma, torch) that
a fork would copy mid-lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import InvalidInputError

if TYPE_CHECKING:
    from rcmu_agent.recognizer import Recognizer
    from rcmu_agent.schema import Region
    from rcmu_agent.settings import Settings

__all__ = ["PixelPool", "Pixels", "compute_pixels", "worker_count"]


@dataclass
class Pixels:
    """Everything derived from one photo's pixels and bytes; nothing that depends on the memory."""

    width: int
    height: int
    taken_at: datetime | None
    place: tuple[float, float] | None
    faces: list[Region]  # with dlib descriptors
    objects: list[Region]  # with CLIP crop embeddings when a CLIP model is configured
    image_vector: list[float] | None


def worker_count(configured: int) -> int:
    """`0` means one per core."""
    return configured if configured > 0 else max(os.cpu_count() or 1, 1)


def compute_pixels(recognizer: Recognizer, rel: str, data: bytes, categories: list[str], whole: bool = True) -> Pixels:
    """Decode and check the photo, then see it as a question would (`categories`: object kinds to look
    for — the non-person categories the user taught) and, with `whole`, embed it whole for search by look."""
    from rcmu_agent.images import load_image
    from rcmu_agent.memory.library._exif import read_exif

    settings = recognizer.settings
    try:
        image = load_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    except InvalidInputError as exc:  # decoded from bytes: put the file's name where it says "image bytes"
        raise InvalidInputError(exc.problem.replace("image bytes", rel, 1), exc.fix) from exc
    taken_at, place = read_exif(data)
    regions = recognizer.see(image, categories)
    faces = [r for r in regions if r.category == "person"]
    objects = [r for r in regions if r.category != "person"]
    vector = recognizer.embed_photo(image) if whole else None
    return Pixels(image.width, image.height, taken_at, place, faces, objects, vector)


# ---- inside a worker process ---------------------------------------------------------------------
_worker_recognizer: Recognizer | None = None


def _start_worker(settings: Settings, threads: int) -> None:
    """Runs once per worker, before any model: cap math threads so N workers do not fight over cores."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from rcmu_agent.recognizer import Recognizer

    global _worker_recognizer
    _worker_recognizer = Recognizer(settings)


def _work(rel: str, data: bytes, categories: list[str], whole: bool) -> Pixels:
    assert _worker_recognizer is not None, "worker used before _start_worker"
    return compute_pixels(_worker_recognizer, rel, data, categories, whole)


class PixelPool:
    """`submit` returns a future of `Pixels`: computed by worker processes when `workers > 1` (or
    `processes` says so: one worker beside a busy caller), else right away in this process with the
    caller's own recognizer (the way a test can swap a model in)."""

    def __init__(self, recognizer: Recognizer, workers: int, *, processes: bool | None = None) -> None:
        self.recognizer, self.workers = recognizer, workers
        self.processes = workers > 1 if processes is None else processes
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, rel: str, data: bytes, categories: list[str], whole: bool = True) -> Future[Pixels]:
        if not self.processes:
            return _done(lambda: compute_pixels(self.recognizer, rel, data, categories, whole))
        if self._pool is None:
            import multiprocessing

            threads = max((os.cpu_count() or 1) // self.workers, 1)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.recognizer.settings, threads),
            )
        return self._pool.submit(_work, rel, data, categories, whole)

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


def _done(compute: Callable[[], Any]) -> Future[Any]:
    future: Future[Any] = Future()
    try:
        future.set_result(compute())
    except Exception as exc:  # handed over like a worker's exception: at `result()`
        future.set_exception(exc)
    return future
