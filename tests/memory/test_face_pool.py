"""An import starts face-detection workers only when there is enough work for them (issue 22: a 4-row
import ran at 0.2 entities/s because starting the workers dominated)."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent.memory.transfer import _faces
from rcmu_agent.memory.transfer._faces import POOL_WORTH_SECONDS, Described, FacePool
from rcmu_agent.memory.transfer._paths import Photo


class _Recorded(Executor):
    """Stands in for the worker processes: records what they would describe."""

    def __init__(self) -> None:
        self.photos: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.photos.append(args[0].label)
        future: Future[Any] = Future()
        future.set_result(Described(descriptor=[0.0] * 128, faces=1))
        return future


@pytest.fixture()
def pool_parts(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Photos described here take `seconds` each; starting the workers starts a `_Recorded`."""
    parts: dict[str, Any] = {"seconds": 0.005, "inline": [], "workers": None}

    def describe(photo: Photo, recognizer: Any) -> Described:
        time.sleep(parts["seconds"])
        parts["inline"].append(photo.label)
        return Described(descriptor=[1.0] * 128, faces=1)

    def start(self: FacePool) -> None:
        parts["workers"] = self._pool = _Recorded()

    monkeypatch.setattr(_faces, "describe_face", describe)
    monkeypatch.setattr(FacePool, "_start", start)
    return parts


def _photos(count: int) -> list[Photo]:
    return [Photo(f"photo {n}".encode(), ".jpg", f"p{n}.jpg") for n in range(count)]


def _run(pool: FacePool, photos: list[Photo]) -> None:
    for photo in photos:
        if pool.left is not None:
            pool.left -= 1  # as the loader counts the rows it plans
        assert pool.submit(photo).result().faces == 1


@pytest.mark.unit
def test_a_few_photos_are_described_here_and_start_no_worker(pool_parts: dict[str, Any]) -> None:
    photos = _photos(4)
    pool = FacePool(object(), 2, left=len(photos))  # type: ignore[arg-type]
    _run(pool, photos)
    assert not pool.started and pool_parts["workers"] is None
    assert pool_parts["inline"] == [p.label for p in photos]


@pytest.mark.unit
def test_workers_start_once_the_photos_left_would_take_longer_here(pool_parts: dict[str, Any]) -> None:
    photos = _photos(12)
    left = 2000  # a big import: 2000 photos x 5 ms is well over POOL_WORTH_SECONDS
    assert left * pool_parts["seconds"] > POOL_WORTH_SECONDS
    pool = FacePool(object(), 2, left=left)  # type: ignore[arg-type]
    _run(pool, photos)
    assert pool.started
    # the first loads dlib, the second measures a photo; the workers describe the rest
    assert pool_parts["inline"] == ["p0.jpg", "p1.jpg"]
    assert pool_parts["workers"].photos == [p.label for p in photos[2:]]


@pytest.mark.unit
def test_workers_asked_for_start_with_the_first_photo_and_none_means_none(pool_parts: dict[str, Any]) -> None:
    asked = FacePool(object(), 1)  # type: ignore[arg-type]  # `--workers 1`: as asked, whatever the size
    assert asked.started
    _run(asked, _photos(2))
    assert pool_parts["inline"] == [] and pool_parts["workers"].photos == ["p0.jpg", "p1.jpg"]

    pool_parts["workers"] = None
    inline = FacePool(object(), 0, left=10_000)  # type: ignore[arg-type]  # `--workers 0`
    _run(inline, _photos(5))
    assert not inline.started and pool_parts["workers"] is None


@pytest.mark.integration
def test_a_four_row_import_with_default_workers_starts_none(
    tmp_path: Path, small_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _memory_helpers import _assistant

    def refuse(self: FacePool) -> None:
        raise AssertionError("workers started for a 4-row import")

    monkeypatch.setattr(FacePool, "_start", refuse)
    kb = tmp_path / "kb"
    (kb / "photos").mkdir(parents=True)
    rows = [("Kit Harington", "kit_harington.jpg"), ("Barack Obama", "obama.jpg"), ("Two", "two_people.jpg")]
    for _, photo in rows:
        shutil.copyfile(small_photos / photo, kb / "photos" / photo)
    shutil.copyfile(small_photos / "chelsea.jpg", kb / "photos" / "chelsea.jpg")
    lines = [{"name": name, "info": "someone", "photos": [f"photos/{photo}"]} for name, photo in rows]
    lines.append({"name": "Chelsea", "info": "a cat", "category": "cat", "photos": ["photos/chelsea.jpg"]})
    (kb / "kb.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    report = _assistant(tmp_path / "home").import_memory(kb / "kb.jsonl")  # workers: the default
    assert (report.added, report.failed) == (4, [])
