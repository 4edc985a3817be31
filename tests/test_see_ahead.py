"""Faces seen ahead: `rcmu ask` starts dlib in a worker process while it imports the agent, and the
graph's detect step takes the worker's faces instead of detecting again — the same faces, the same
descriptors, and never a stale or failed result."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent.images import load_image
from rcmu_agent.memory.library.workers import PixelPool, Pixels
from rcmu_agent.recognizer import Recognizer
from rcmu_agent.schema import Region
from rcmu_agent.settings import Settings


class _NoDetection:
    """A face detector that fails the test when the recognizer detects instead of taking what it expected."""

    def detect(self, image: Any) -> list[Region]:
        raise AssertionError("detected again although the faces were expected")


class _TwoFaces:
    """dlib's part, stood in for where a test checks what `see` takes rather than what dlib finds: the two
    faces of tests/data/two_people.jpg, each with a descriptor made from its box."""

    def detect(self, image: Any) -> list[Region]:
        return [Region(box=(116, 17, 206, 107), category="person"), Region(box=(394, 36, 485, 127), category="person")]

    def encode(self, image: Any, regions: list[Region]) -> list[Region]:
        return [r.model_copy(update={"descriptor": [float(v) for v in r.box]}) for r in regions]


def _pixel_only(settings: Settings) -> Recognizer:
    return Recognizer(settings)


def _stand_in(settings: Settings) -> Recognizer:
    recognizer = Recognizer(settings)
    recognizer.__dict__["face_detector"] = recognizer.__dict__["face_encoder"] = _TwoFaces()
    return recognizer


@pytest.fixture()
def photo(small_photos: Path, tmp_path: Path) -> Path:
    """A copy of tests/data/two_people.jpg this test may touch."""
    copy = tmp_path / "two_people.jpg"
    shutil.copy(small_photos / "two_people.jpg", copy)
    return copy


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", object_detector="", image_embedding_model="")


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


@pytest.mark.integration
def test_a_worker_process_sees_the_same_faces_and_see_takes_them(
    photo: Path, settings: Settings, tmp_path: Path
) -> None:
    here = _pixel_only(settings)
    image = load_image(photo)
    expected = here.see(image)
    assert len(expected) == 2 and all(r.descriptor for r in expected)

    pool = PixelPool(_pixel_only(settings), 1, processes=True)
    try:
        future = pool.submit(str(photo), photo.read_bytes(), [], whole=False)
        ahead = _pixel_only(settings)
        ahead.__dict__["face_detector"] = _NoDetection()
        ahead.expect(tmp_path / "." / "two_people.jpg", future)  # any spelling of the same file
        seen = ahead.see(image, source=str(photo))
    finally:
        pool.close()
    assert [r.box for r in seen] == [r.box for r in expected]
    assert [r.descriptor for r in seen] == [r.descriptor for r in expected]
    assert future.result().image_vector is None  # `whole=False`: no photo embedding was computed
    assert not ahead._expected  # taken once


@pytest.mark.unit
def test_stale_failed_or_mismatched_results_are_not_used(photo: Path, settings: Settings) -> None:
    image = load_image(photo)
    truth = _stand_in(settings).see(image)
    fake = Pixels(image.width, image.height, None, None, [truth[0].model_copy(update={"box": (1, 2, 3, 4)})], [], None)

    recognizer = _stand_in(settings)
    recognizer.expect(photo, _done(fake))
    assert [r.box for r in recognizer.see(image, source=photo)] == [(1, 2, 3, 4)]  # used while fresh

    recognizer.expect(photo, _done(fake))
    os.utime(photo, ns=(1, 1))  # the file changed after the worker read it: seen afresh
    assert [r.box for r in recognizer.see(image, source=photo)] == [r.box for r in truth]

    failed: Future[Any] = Future()
    failed.set_exception(RuntimeError("worker died"))
    recognizer.expect(photo, failed)
    assert [r.box for r in recognizer.see(image, source=photo)] == [r.box for r in truth]

    other_size = Pixels(image.width + 1, image.height, None, None, fake.faces, [], None)
    recognizer.expect(photo, _done(other_size))
    assert [r.box for r in recognizer.see(image, source=photo)] == [r.box for r in truth]

    recognizer.expect(photo, _done(fake))  # caller's regions never take expected faces
    given = [Region(box=(10, 10, 200, 200), category="cup", info="a mug")]
    assert [r.box for r in recognizer.see(image, given=given, source=photo)] == [(10, 10, 200, 200)]
