"""Face detection and descriptors with the real dlib models, on the real photos in shared/data/faces.

The facts checked here are the ones the data README documents: one face per reference photo, the
two faces of `two_people.jpg` where they are, and dlib's 0.6 cut-off separating people.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent.errors import ModelLoadError
from rcmu_agent.faces import FACE_DESCRIPTOR_MODEL, FaceDetector, FaceEncoder, model_file

THRESHOLD = 0.6  # dlib's usual cut-off between descriptors


def _person(path: Path) -> str:
    """`reference/obama_obama2.jpg` → obama (name before the last "_"); `scenes/obama1.jpg` → obama."""
    return path.stem.rsplit("_", 1)[0] if path.parent.name == "reference" else path.stem.removesuffix("1")


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


@pytest.fixture(scope="module")
def references(faces_dir: Path) -> list[Path]:
    paths = sorted(p for p in (faces_dir / "reference").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert {_person(p) for p in paths} == {"alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"}
    return paths


@pytest.fixture(scope="module")
def descriptors(references: list[Path], faces_dir: Path) -> dict[Path, np.ndarray]:
    """One descriptor per single-face photo (references and the two one-face scenes), by path."""
    detector, encoder = FaceDetector(), FaceEncoder()
    out = {}
    for path in [*references, faces_dir / "scenes" / "obama1.jpg", faces_dir / "scenes" / "alex_lacamoire1.jpg"]:
        image = _open(path)
        faces = detector.detect(image)
        assert len(faces) == 1, f"{path.name}: {len(faces)} faces"
        out[path] = np.asarray(encoder.encode(image, faces)[0].descriptor)
    return out


@pytest.mark.unit
def test_model_file_finds_the_shipped_dat_files() -> None:
    for name in (
        f"{FACE_DESCRIPTOR_MODEL}.dat",
        "shape_predictor_5_face_landmarks.dat",
        "mmod_human_face_detector.dat",
    ):
        path = model_file(name)
        assert path.is_file() and path.name == name and path.stat().st_size > 0


@pytest.mark.unit
def test_model_file_names_a_missing_file_and_the_fix() -> None:
    with pytest.raises(ModelLoadError) as err:
        model_file("no_such_model.dat")
    assert "no_such_model.dat" in err.value.problem and err.value.fix


@pytest.mark.integration
def test_each_reference_photo_has_exactly_one_face(references: list[Path]) -> None:
    detector = FaceDetector()
    for path in references:
        image = _open(path)
        faces = detector.detect(image)
        assert len(faces) == 1, f"{path.name}: {len(faces)} faces"
        face = faces[0]
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
        assert face.category == "person" and face.source == "face" and face.score is not None


@pytest.mark.integration
def test_two_people_has_both_faces_where_documented(faces_dir: Path) -> None:
    image = _open(faces_dir / "scenes" / "two_people.jpg")
    assert image.size == (1126, 661)
    faces = FaceDetector().detect(image)
    assert len(faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)  # largest first
    left, right = sorted(faces, key=lambda f: f.box[0])
    assert left.box[0] >= 240 and left.box[2] <= 420  # Obama, x≈250–410
    assert right.box[0] >= 770 and right.box[2] <= 975  # Biden, x≈780–965


@pytest.mark.integration
def test_detector_rejects_non_rgb_arrays() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        FaceDetector().detect(np.zeros((20, 20), dtype=np.uint8))


@pytest.mark.integration
def test_encoder_gives_128_d_descriptors(faces_dir: Path, descriptors: dict[Path, np.ndarray]) -> None:
    encoder = FaceEncoder()
    assert encoder.dim == 128 and encoder.model_name == FACE_DESCRIPTOR_MODEL
    assert encoder.encode(_open(faces_dir / "scenes" / "obama1.jpg"), []) == []
    for path, vector in descriptors.items():
        assert vector.shape == (128,), path.name
        assert np.isfinite(vector).all() and 0.1 < np.linalg.norm(vector) < 2.0

    image = _open(faces_dir / "scenes" / "two_people.jpg")
    faces = FaceDetector().detect(image)
    encoded = FaceEncoder().encode(image, faces)
    assert [r.box for r in encoded] == [r.box for r in faces]  # same regions, descriptor filled in
    assert all(r.descriptor is not None and len(r.descriptor) == 128 for r in encoded)


@pytest.mark.integration
def test_same_person_is_close_and_different_people_are_far(descriptors: dict[Path, np.ndarray]) -> None:
    same: list[tuple[float, str, str]] = []
    different: list[tuple[float, str, str]] = []
    for (a, va), (b, vb) in itertools.combinations(descriptors.items(), 2):
        distance = float(np.linalg.norm(va - vb))
        (same if _person(a) == _person(b) else different).append((distance, a.name, b.name))
    # pairs of the same person: obama 3 (two references + obama1.jpg), alex 1 (reference + scene),
    # biden, kit_harington and rose_leslie 1 each (two references)
    assert len(same) == 7 and len(different) == 11 * 10 // 2 - 7
    assert max(same)[0] < THRESHOLD, max(same)
    assert min(different)[0] > THRESHOLD, min(different)


@pytest.mark.integration
def test_two_people_faces_match_their_references(faces_dir: Path, descriptors: dict[Path, np.ndarray]) -> None:
    image = _open(faces_dir / "scenes" / "two_people.jpg")
    left, right = sorted(FaceEncoder().encode(image, FaceDetector().detect(image)), key=lambda f: f.box[0])

    def nearest(face: list[float] | None) -> str:
        vector = np.asarray(face)
        path = min(descriptors, key=lambda p: float(np.linalg.norm(descriptors[p] - vector)))
        assert float(np.linalg.norm(descriptors[path] - vector)) < THRESHOLD
        return _person(path)

    assert nearest(left.descriptor) == "obama"
    assert nearest(right.descriptor) == "biden"
