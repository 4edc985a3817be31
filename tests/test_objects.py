"""Object detection through the real transformers classes, on tiny random checkpoints saved to disk.

The checkpoints go through exactly the loading code a hub id does (`AutoConfig` → detector class,
`AutoTokenizer`, `AutoImageProcessor`), so these tests cover loading, box geometry and NMS; they
cannot say anything about detection quality (the weights are random).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent import model_cache
from rcmu_agent.errors import InvalidInputError, ModelLoadError
from rcmu_agent.objects import ObjectDetector, nms
from rcmu_agent.settings import Settings
from rcmu_agent.testing import build_tiny_grounding_dino, build_tiny_owlv2

QUERIES = ["cat", "dog", "rocket"]


@pytest.fixture(scope="session")
def owlv2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_owlv2(tmp_path_factory.mktemp("tiny-owlv2"))


@pytest.fixture(scope="session")
def grounding_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_grounding_dino(tmp_path_factory.mktemp("tiny-grounding-dino"))


@pytest.fixture(scope="session")
def cat_photo(shared_data: Path) -> Image.Image:
    with Image.open(shared_data / "objects" / "chelsea.png") as img:
        return img.convert("RGB")


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---- NMS ------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_nms_drops_overlapping_lower_scores_and_keeps_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9], [5, 0, 15, 10]], float)
    scores = np.array([0.6, 0.9, 0.5, 0.95, 0.7])
    # 3 (0.95) suppresses 1 (IoU 0.81/0.9 > .5) and 0 (IoU 0.9); 4 overlaps 3 by 45/145: kept; 2 is apart
    assert nms(boxes, scores).tolist() == [3, 4, 2]


@pytest.mark.unit
def test_nms_threshold_is_strict_and_empty_input_is_fine() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], float)  # IoU exactly 0.5
    assert nms(boxes, np.array([0.9, 0.8]), iou_threshold=0.5).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), iou_threshold=0.49).tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


# ---- OWLv2 ----------------------------------------------------------------------------------------
@pytest.mark.integration
def test_owlv2_detects_on_a_real_photo(owlv2_dir: Path, cat_photo: Image.Image) -> None:
    detector = ObjectDetector(str(owlv2_dir), device="cpu")
    regions = detector.detect(cat_photo, QUERIES, score_threshold=0.0)

    assert regions, "a 0.0 threshold keeps every box that overlaps the photo"
    width, height = cat_photo.size
    scores = [r.score for r in regions]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    for region in regions:
        x1, y1, x2, y2 = region.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert region.source == "object"
        assert region.category in QUERIES
    for i, a in enumerate(regions):  # NMS ran per category
        for b in regions[i + 1 :]:
            if a.category == b.category:
                assert _iou(a.box, b.box) <= 0.5


@pytest.mark.integration
def test_owlv2_boxes_are_in_original_pixels_despite_square_padding(owlv2_dir: Path, cat_photo: Image.Image) -> None:
    """OWLv2 pads the 451x300 photo to 451x451; boxes must be scaled by 451 on both axes.

    The tiny model's heads are near zero, so each of its 4x4 patches proposes a box one patch wide
    and high around a grid corner: square, 451/4 px a side. Scaling by (width, height) instead would
    make them 112.75 x 75, and the bottom row (at y = 451, in the padding) would survive.
    """
    width, height = cat_photo.size
    side = max(width, height) / 4
    regions = ObjectDetector(str(owlv2_dir), device="cpu").detect(cat_photo, ["cat"], score_threshold=0.0)
    inner = [r.box for r in regions if r.box[2] < width and r.box[3] < height and r.box[0] > 0 and r.box[1] > 0]
    assert inner
    for x1, y1, x2, y2 in inner:
        assert x2 - x1 == pytest.approx(side, abs=2.0)
        assert y2 - y1 == pytest.approx(side, abs=2.0)
    assert all(r.box[1] < height - 1 for r in regions)


@pytest.mark.integration
def test_threshold_categories_and_image_modes(owlv2_dir: Path, cat_photo: Image.Image) -> None:
    detector = ObjectDetector(str(owlv2_dir), device="cpu", score_threshold=0.5)
    regions = detector.detect(cat_photo.convert("L"), ["  Cat ", "cat", "DOG"])
    assert all((r.score or 0) > 0.5 for r in regions)
    assert {r.category for r in regions} <= {"cat", "dog"}
    assert detector.detect(cat_photo.convert("RGBA"), ["cat"], score_threshold=1.0) == []
    with pytest.raises(InvalidInputError):
        detector.detect(cat_photo, ["cat"], score_threshold=1.5)


@pytest.mark.integration
def test_weights_are_loaded_once_and_shared(
    owlv2_dir: Path, cat_photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    model_cache.clear()
    calls: list[str] = []
    original = transformers.Owlv2ForObjectDetection.from_pretrained.__func__  # type: ignore[attr-defined]

    def counting(cls: type, name: str, *args: object, **kwargs: object) -> object:
        calls.append(str(name))
        return original(cls, name, *args, **kwargs)

    monkeypatch.setattr(transformers.Owlv2ForObjectDetection, "from_pretrained", classmethod(counting))
    first, second = ObjectDetector(str(owlv2_dir), device="cpu"), ObjectDetector(str(owlv2_dir), device="cpu")
    first.detect(cat_photo, ["cat"])
    second.detect(cat_photo, ["dog"])
    second.load()
    assert calls == [str(owlv2_dir)]
    assert [key[1:] for key in model_cache.keys(ObjectDetector)] == [(str(owlv2_dir), ("cpu",))]


# ---- Grounding DINO -------------------------------------------------------------------------------
@pytest.mark.integration
def test_grounding_dino_detects_with_query_labels(grounding_dino_dir: Path, cat_photo: Image.Image) -> None:
    detector = ObjectDetector(str(grounding_dino_dir), device="cpu")
    regions = detector.detect(cat_photo, [*QUERIES, "coffee cup"], score_threshold=0.0)
    assert regions
    width, height = cat_photo.size
    assert [r.score for r in regions] == sorted((r.score for r in regions), reverse=True)  # type: ignore[type-var]
    for region in regions:
        x1, y1, x2, y2 = region.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert region.source == "object"
        assert region.category in [*QUERIES, "coffee cup"]


# ---- loading failures -----------------------------------------------------------------------------
@pytest.mark.unit
def test_no_categories_returns_nothing_without_loading(small_photos: Path, tmp_path: Path) -> None:
    with Image.open(small_photos / "chelsea.jpg") as img:
        cat_photo = img.convert("RGB")
    missing = str(tmp_path / "never-created")
    detector = ObjectDetector(missing, device="cpu")
    assert detector.detect(cat_photo, []) == []
    assert detector.detect(cat_photo, ["  ", ""]) == []
    assert all(key.model != missing for key in model_cache.keys(ObjectDetector))


@pytest.mark.integration
def test_missing_directory_names_the_setting(cat_photo: Image.Image, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="RCMU_OBJECT_DETECTOR") as info:
        ObjectDetector(str(tmp_path / "nope"), device="cpu").detect(cat_photo, ["cat"])
    assert "does not exist" in info.value.problem


@pytest.mark.integration
def test_hub_id_offline_names_the_setting(cat_photo: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="RCMU_OBJECT_DETECTOR"):
        ObjectDetector("rcmu-tests/no-such-detector", device="cpu").detect(cat_photo, ["cat"])


@pytest.mark.integration
def test_wrong_model_type_is_refused(cat_photo: Image.Image, tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'bert' model, not an open-vocabulary detector"):
        ObjectDetector(str(tmp_path), device="cpu").detect(cat_photo, ["cat"])


@pytest.mark.integration
def test_from_settings(owlv2_dir: Path) -> None:
    assert ObjectDetector.from_settings(Settings(object_detector="")) is None
    detector = ObjectDetector.from_settings(
        Settings(object_detector=str(owlv2_dir), object_score_threshold=0.2, device="cpu")
    )
    assert detector is not None
    assert (detector.model, detector.device, detector.score_threshold) == (str(owlv2_dir), "cpu", 0.2)
