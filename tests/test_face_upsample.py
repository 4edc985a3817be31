"""Face detection's upsampling follows the photo's size: phone photos skip it (4x less work), the
shared and test photos keep today's upsample 1 and so find exactly today's faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent.faces import LARGE_SIDE, FaceDetector
from rcmu_agent.images import load_image
from rcmu_agent.schema import Region
from rcmu_agent.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


REPO_PHOTOS = [REPO / "examples" / "photos", REPO / "evals" / "samples" / "images", REPO / "tests"]


def every_photo(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def bare_hog(image: Image.Image, upsample: int) -> list[tuple[float, float, float, float]]:
    """Today's detection, straight from dlib: HOG at a fixed upsampling."""
    import dlib

    rects, _, _ = dlib.get_frontal_face_detector().run(np.asarray(image), upsample, 0.0)
    return sorted((r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects)


def boxes(regions: list[Region]) -> list[tuple[float, float, float, float]]:
    return sorted(r.box for r in regions)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.unit
def test_upsample_choice_by_size() -> None:
    detector = FaceDetector.from_settings(Settings())
    assert detector.upsample == 1 and detector.model == "hog"  # no CUDA dlib here
    assert detector.upsample_for(4032, 3024) == 0  # 12 MP phone photo
    assert detector.upsample_for(1126, 661) == 1
    assert detector.upsample_for(LARGE_SIDE, LARGE_SIDE) == 0
    assert detector.upsample_for(LARGE_SIDE - 1, 5000) == 1
    # the configured value stays the most: 0 means never; 2 only for photos small enough twice over
    assert FaceDetector(upsample=0).upsample_for(300, 300) == 0
    assert FaceDetector(upsample=2).upsample_for(400, 300) == 2
    assert FaceDetector(upsample=2).upsample_for(1548, 1024) == 1


@pytest.mark.unit
def test_every_photo_in_the_repository_keeps_todays_upsampling() -> None:
    detector = FaceDetector.from_settings(Settings())
    photos = every_photo(*REPO_PHOTOS)
    assert len(photos) >= 20
    for path in photos:
        with Image.open(path) as img:
            assert detector.upsample_for(*img.size) == Settings().face_upsample, path


@pytest.mark.integration
def test_every_shared_photo_keeps_todays_upsampling(shared_data: Path) -> None:
    detector = FaceDetector.from_settings(Settings())
    photos = every_photo(shared_data)
    assert len(photos) >= 16
    for path in photos:
        with Image.open(path) as img:
            assert detector.upsample_for(*img.size) == Settings().face_upsample, path


@pytest.mark.integration
def test_same_faces_as_today_on_the_scenes(faces_dir: Path) -> None:
    detector = FaceDetector.from_settings(Settings())
    for path in sorted((faces_dir / "scenes").iterdir()):
        image = load_image(path)
        assert boxes(detector.detect(image)) == bare_hog(image, 1), path.name


@pytest.mark.integration
def test_phone_photo_at_upsample_0_finds_the_faces_upsample_1_finds(faces_dir: Path) -> None:
    """two_people.jpg as a 12 MP phone photo: the faces found at upsample 0 are today's faces (found at
    upsample 1 on the original), scaled."""
    original = load_image(faces_dir / "scenes" / "two_people.jpg")
    width = original.height * 4 // 3
    left = (original.width - width) // 2
    cropped = original.crop((left, 0, left + width, original.height))
    phone = cropped.resize((4032, 3024), Image.Resampling.BICUBIC)
    scale = 4032 / cropped.width
    today = [tuple(v * scale for v in box) for box in bare_hog(cropped, 1)]
    found = boxes(FaceDetector.from_settings(Settings()).detect(phone))
    assert len(today) == len(found) == 2
    for expected, got in zip(today, found, strict=True):
        assert iou(expected, got) > 0.6, (expected, got)
