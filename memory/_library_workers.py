"""The pixel work of `rcmu index` — decode, EXIF, faces, objects, CLIP — in worker processes.

dlib's detector is single-threaded and holds the GIL-free part of the work, so on a machine with N
cores one process leaves N-1 idle: bare dlib in 2 processes ran 1.91x as fast as in one. Each
worker builds its own `Parts` once (models load on first use and stay for the run); the indexing
process stays the single writer — recognition against the memory, the sidecar rows and the vectors
are all committed there, one photo per transaction, in the order the files were walked.

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
    from rcmu_agent.parts import Parts
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


def compute_pixels(parts: Parts, rel: str, data: bytes, categories: list[str]) -> Pixels:
    """Decode and check the photo, then run every pixel model on it (`categories`: object kinds to
    look for — the non-person categories the user taught)."""
    from rcmu_agent.images import load_image
    from rcmu_agent.memory._exif import read_exif

    settings = parts.settings
    try:
        image = load_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    except InvalidInputError as exc:  # decoded from bytes: put the file's name where it says "image bytes"
        raise InvalidInputError(exc.problem.replace("image bytes", rel, 1), exc.fix) from exc
    taken_at, place = read_exif(data)
    faces = parts.face_encoder.encode(image, parts.face_detector.detect(image))
    objects: list[Region] = []
    if categories and parts.object_detector is not None:
        objects = parts.object_detector.detect(image, categories)
        if objects and parts.image_embedder is not None:
            crops = [parts.image_embedder.crop(image, r.box) for r in objects]
            vectors = parts.image_embedder.embed(crops)
            objects = [r.model_copy(update={"descriptor": v.tolist()}) for r, v in zip(objects, vectors, strict=True)]
    image_vector = None
    if parts.image_embedder is not None:
        image_vector = parts.image_embedder.embed([image])[0].tolist()
    return Pixels(image.width, image.height, taken_at, place, faces, objects, image_vector)


# ---- inside a worker process ---------------------------------------------------------------------
_worker_parts: Parts | None = None


def _start_worker(settings: Settings, threads: int) -> None:
    """Runs once per worker, before any model: cap math threads so N workers do not fight over cores."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from rcmu_agent.parts import Parts

    global _worker_parts
    _worker_parts = Parts(settings)


def _work(rel: str, data: bytes, categories: list[str]) -> Pixels:
    assert _worker_parts is not None, "worker used before _start_worker"
    return compute_pixels(_worker_parts, rel, data, categories)


class PixelPool:
    """`submit` returns a future of `Pixels`: computed by worker processes when `workers > 1`, else
    right away in this process with the caller's own parts (the way a test can swap one in)."""

    def __init__(self, parts: Parts, workers: int) -> None:
        self.parts, self.workers = parts, workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, rel: str, data: bytes, categories: list[str]) -> Future[Pixels]:
        if self.workers <= 1:
            return _done(lambda: compute_pixels(self.parts, rel, data, categories))
        if self._pool is None:
            import multiprocessing

            threads = max((os.cpu_count() or 1) // self.workers, 1)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.parts.settings, threads),
            )
        return self._pool.submit(_work, rel, data, categories)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _done(compute: Callable[[], Any]) -> Future[Any]:
    future: Future[Any] = Future()
    try:
        future.set_result(compute())
    except Exception as exc:  # handed over like a worker's exception: at `result()`
        future.set_exception(exc)
    return future
