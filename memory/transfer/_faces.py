"""Describing people's reference photos for an import: dlib in worker processes, results in order.

Detection is the slow part of loading a knowledge base (tens of milliseconds per photo against a
fraction of a millisecond to store it), so it runs in a process pool whose workers load dlib once,
while the importing process stays the single writer.
A worker takes ~1.5 s to start and load dlib on a busy 2-core machine, longer than a few photos take
in this process (a 4-row import ran at 0.2 entities/s when it always started them), so by default the
pool starts only once the photos left would take longer here than `POOL_WORTH_SECONDS` (see
`FacePool`); until then photos are described in this process.
Workers are not forked from the importing process: it holds Chroma's (and, with a CLIP model, torch's)
threads, which a forked child would inherit in whatever state they were in.
Each worker describes with its own pixel-only `Recognizer` — the call `Assistant.remember` makes
(decode with the same limits, the largest face, its descriptor) — so an imported person is
recognised at exactly the distances a taught one is.
Workers are handed the photo's bytes, never its path: the importing process read it once, through the
checks of `_paths`, and nothing opens the path again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import RcmuError
from rcmu_agent.memory._records import photo_digest
from rcmu_agent.memory.transfer._paths import Photo

if TYPE_CHECKING:
    from rcmu_agent.recognizer import Recognizer
    from rcmu_agent.settings import Settings

__all__ = ["POOL_WORTH_SECONDS", "Described", "FacePool", "describe_face"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Described:
    """A reference photo's face descriptor, or why it cannot be used (its bytes stay with the importer)."""

    descriptor: list[float] | None = None
    faces: int = 0
    error: str | None = None


# Workers forked from a clean single-threaded server (spawned where there is none). As with any
# non-fork start, a calling script needs an `if __name__ == "__main__":` guard: workers import it.
_START = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_REMEMBERED = 256  # photos whose description is kept for a later row with the same bytes
POOL_WORTH_SECONDS = 4.0  # inline work left that pays for starting workers: about twice their start-up
_worker: Recognizer | None = None  # pixel-only, once per worker process


def describe_face(photo: Photo, recognizer: Recognizer) -> Described:
    """The largest face's descriptor in one photo's bytes; an error instead of raising."""
    from rcmu_agent.images import load_image

    settings = recognizer.settings
    try:
        image = load_image(photo.data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    except RcmuError as exc:
        return Described(error=f"photo {photo.label}: {exc.problem}")
    try:
        ref = recognizer.describe_reference(image, "person", photo.label)
    except RcmuError as exc:
        return Described(error=exc.problem)
    return Described(ref.face_descriptor, ref.faces)


def _start_worker(settings: Settings) -> None:
    """Load the dlib models once (a blank image runs every one of them) and die with the parent."""
    global _worker
    import numpy as np
    from PIL import Image

    from rcmu_agent.recognizer import Recognizer
    from rcmu_agent.schema import Region

    recognizer = Recognizer(settings)
    blank = Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8))
    recognizer.face_detector.detect(blank)
    recognizer.face_encoder.encode(blank, [Region(box=(8, 8, 56, 56), category="person", source="face")])
    _worker = recognizer

    importer = multiprocessing.parent_process()
    if importer is not None:

        def watch() -> None:  # an importer killed with -9 cannot tell its pool to stop: notice it here
            importer.join()
            os._exit(0)

        threading.Thread(target=watch, daemon=True, name="rcmu-importer-watch").start()


def _describe_in_worker(photo: Photo) -> Described:
    assert _worker is not None, "worker not initialised"
    return describe_face(photo, _worker)


class _Inline(Executor):
    """Describe in this process with the caller's models (`workers=0`, or too few photos for workers)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class FacePool:
    """Photos of people described in `workers` processes (0: in this process), the same bytes once.

    `left` None: the workers start with the first photo. An int: the photos still to come after the
    ones submitted (the caller keeps it current); photos are described in this process, the first two
    always (the first loads dlib, the second measures a photo), until `left` of them would take longer
    than `POOL_WORTH_SECONDS` here; from then on the workers describe the rest.
    """

    def __init__(self, recognizer: Recognizer, workers: int, *, left: int | None = None) -> None:
        self.recognizer = recognizer
        self.workers = max(0, workers)
        self.left = left
        self._seen: OrderedDict[str, Future[Described]] = OrderedDict()  # the last few, by content
        self._inline = _Inline()
        self._pool: Executor | None = None
        self._warm = False
        self._inline_photos = 0  # described here after the first, and how long they took
        self._inline_seconds = 0.0
        if self.workers and left is None:
            self._start()

    @property
    def started(self) -> bool:
        """Whether the worker processes were started (for tests and reports)."""
        return self._pool is not None

    def _start(self) -> None:
        log.info("describing faces in %d worker process(es); %s photo(s) to come", self.workers, self.left)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(_START),
            initializer=_start_worker,
            initargs=(self.recognizer.settings,),
        )

    def _worth_workers(self) -> bool:
        if not self.workers or self.left is None or not self._inline_photos:
            return False
        return self.left * self._inline_seconds / self._inline_photos > POOL_WORTH_SECONDS

    def submit(self, photo: Photo) -> Future[Described]:
        """A future description of `photo`; the same bytes asked twice are described once."""
        key = f"{photo_digest(photo.data)} {photo.label}"  # by content; by name too, for the error it may give
        if key not in self._seen:
            if self._pool is None and self._worth_workers():
                self._start()
            if self._pool is not None:
                self._seen[key] = self._pool.submit(_describe_in_worker, photo)
            else:
                started = time.perf_counter()
                self._seen[key] = self._inline.submit(describe_face, photo, self.recognizer)
                if self._warm:  # the first photo also loaded dlib: it says nothing about the next ones
                    self._inline_seconds += time.perf_counter() - started
                    self._inline_photos += 1
                self._warm = True
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        self._seen.move_to_end(key)
        return self._seen[key]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FacePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
