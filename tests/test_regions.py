"""Box and mask maths: the COCO RLE codec (checked against pycocotools), boxes, region specs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.masks import decode_rle, encode_rle, mask_to_box, to_rle
from rcmu_agent.regions import check_box, parse_region_spec
from rcmu_agent.schema import RLE, Region

pytestmark = pytest.mark.unit

SHAPES = [(1, 1), (1, 17), (23, 1), (7, 13), (64, 48), (120, 95)]


def _masks() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(20240607)
    masks: list[tuple[str, np.ndarray]] = []
    for h, w in SHAPES:
        for density in (0.05, 0.5, 0.95):
            m = rng.random((h, w)) < density
            for first in (False, True):
                forced = m.copy()
                forced[0, 0] = first
                masks.append((f"{h}x{w}-d{density}-first{int(first)}", forced))
        masks.append((f"{h}x{w}-zeros", np.zeros((h, w), dtype=bool)))
        masks.append((f"{h}x{w}-ones", np.ones((h, w), dtype=bool)))
    # long runs (multi-chunk counts) and runs that shrink (negative deltas against counts[i-2])
    blocky = np.kron(rng.random((6, 5)) < 0.5, np.ones((40, 60), dtype=bool))
    masks.append(("blocky-240x300", blocky))
    big_hole = np.ones((300, 400), dtype=bool)
    big_hole[5:295, 3:397] = False
    masks.append(("frame-300x400", big_hole))
    return masks


MASKS = _masks()


def _coco_encode(mask: np.ndarray) -> Any:
    return coco.encode(np.asfortranarray(mask.astype(np.uint8)))


# ---------------------------------------------------------------- codec


@pytest.mark.parametrize(("name", "mask"), MASKS, ids=[n for n, _ in MASKS])
def test_encode_matches_pycocotools_byte_for_byte(name: str, mask: np.ndarray) -> None:
    ours = encode_rle(mask)
    theirs = _coco_encode(mask)
    assert ours.size == tuple(theirs["size"])
    assert ours.counts == theirs["counts"].decode("ascii")


@pytest.mark.parametrize(("name", "mask"), MASKS, ids=[n for n, _ in MASKS])
def test_round_trip_and_decode_of_pycocotools_strings(name: str, mask: np.ndarray) -> None:
    decoded = decode_rle(encode_rle(mask))
    assert decoded.dtype == bool and decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask)

    theirs = _coco_encode(mask)
    from_coco = decode_rle(RLE(size=tuple(theirs["size"]), counts=theirs["counts"].decode("ascii")))
    np.testing.assert_array_equal(from_coco, mask)
    # and pycocotools reads what we write
    ours = encode_rle(mask)
    assert isinstance(ours.counts, str)
    back = coco.decode({"size": list(ours.size), "counts": ours.counts.encode("ascii")})
    np.testing.assert_array_equal(back.astype(bool), mask)


@pytest.mark.parametrize(("name", "mask"), MASKS[::4], ids=[n for n, _ in MASKS[::4]])
def test_uncompressed_counts(name: str, mask: np.ndarray) -> None:
    h, w = mask.shape
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(edges).tolist()
    counts = [0, *runs] if flat[0] else runs
    np.testing.assert_array_equal(decode_rle(RLE(size=(h, w), counts=counts)), mask)
    # pycocotools turns the same uncompressed counts into exactly our compressed string
    compressed = coco.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    assert compressed["counts"].decode("ascii") == encode_rle(mask).counts


def test_known_small_encoding() -> None:
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:5] = True
    assert encode_rle(mask) == RLE(size=(5, 7), counts=";230009")
    assert decode_rle(RLE(size=(2, 3), counts=[1, 2, 3])).tolist() == [[False, True, False], [True, False, False]]
    assert decode_rle(RLE(size=(2, 2), counts=[0, 4])).all()


def test_encode_accepts_non_bool_arrays() -> None:
    values = np.array([[0, 255, 3], [0, 0, 1]], dtype=np.uint8)
    assert encode_rle(values) == encode_rle(values > 0)


def test_encode_refuses_non_2d() -> None:
    with pytest.raises(InvalidInputError, match="mask must be 2-D"):
        encode_rle(np.zeros((4, 4, 3), dtype=bool))
    with pytest.raises(InvalidInputError, match="mask must be 2-D"):
        encode_rle(np.zeros(16, dtype=bool))


@pytest.mark.parametrize(
    "rle",
    [
        RLE(size=(2, 2), counts=[1, 2]),  # 3 pixels for 4
        RLE(size=(2, 2), counts=[1, 2, 3]),  # 6 pixels for 4
        RLE(size=(2, 2), counts=[5, -1]),  # right total, negative run
        RLE(size=(3, 3), counts=encode_rle(np.ones((2, 2), dtype=bool)).counts),  # another mask's counts
        RLE(size=(2, 3), counts=[]),
    ],
)
def test_invalid_rle_raises(rle: RLE) -> None:
    with pytest.raises(InvalidInputError, match="RLE counts cover") as info:
        decode_rle(rle)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("counts", ["a", "0a", "é", " 1", "~~", "\n"])
def test_malformed_counts_string_raises_invalid_input(counts: str) -> None:
    # truncated values, non-ASCII and characters outside COCO's '0'..'o' alphabet
    with pytest.raises(InvalidInputError) as info:
        decode_rle(RLE(size=(2, 2), counts=counts))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- mask_to_box / to_rle


def test_mask_to_box_is_tight_with_exclusive_right_bottom() -> None:
    mask = np.zeros((10, 20), dtype=bool)
    mask[2:5, 3:9] = True
    mask[7, 15] = True
    assert mask_to_box(encode_rle(mask)) == (3.0, 2.0, 16.0, 8.0)
    assert mask_to_box(encode_rle(np.ones((4, 6), dtype=bool))) == (0.0, 0.0, 6.0, 4.0)
    single = np.zeros((3, 3), dtype=bool)
    single[2, 2] = True
    assert mask_to_box(encode_rle(single)) == (2.0, 2.0, 3.0, 3.0)


def test_mask_to_box_of_empty_mask_raises() -> None:
    with pytest.raises(InvalidInputError, match="mask is empty"):
        mask_to_box(encode_rle(np.zeros((4, 4), dtype=bool)))


@pytest.fixture()
def blob() -> np.ndarray:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 10:35] = True
    mask[25, 0] = True
    return mask


def _png(mask: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((mask * 255).astype(np.uint8)).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_to_rle_from_numpy(blob: np.ndarray) -> None:
    expected = encode_rle(blob)
    assert to_rle(blob) == expected
    assert to_rle(blob.astype(np.uint8) * 255) == expected
    assert to_rle(blob.astype(np.float32) * 0.5) == expected


def test_to_rle_from_png_path_and_bytes(blob: np.ndarray, tmp_path: Path) -> None:
    expected = encode_rle(blob)
    path = tmp_path / "mask.png"
    path.write_bytes(_png(blob))
    assert to_rle(path) == expected
    with pytest.raises(InvalidInputError, match="not read as a file"):  # text (JSON) never names a file
        to_rle(str(path))
    assert to_rle(_png(blob)) == expected
    assert to_rle(_png(blob, "RGB")) == expected
    assert to_rle(_png(blob, "1")) == expected


def test_to_rle_from_dicts_and_rle(blob: np.ndarray) -> None:
    expected = encode_rle(blob)
    assert to_rle(expected) is expected
    assert to_rle({"size": [30, 40], "counts": expected.counts}) == expected
    # pycocotools hands out bytes counts: usable as they come
    coco_dict = _coco_encode(blob)
    assert isinstance(coco_dict["counts"], bytes)
    np.testing.assert_array_equal(decode_rle(to_rle(coco_dict)), blob)
    uncompressed = to_rle({"size": (2, 2), "counts": [1, 3]})
    assert decode_rle(uncompressed).tolist() == [[False, True], [True, True]]


@pytest.mark.parametrize(
    "bad",
    [
        {"counts": "abc"},
        {"size": [2, 2]},
        {"size": "big", "counts": "abc"},
        {"size": [2, 2], "counts": 5},
    ],
)
def test_to_rle_bad_dict(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match="mask dict is not COCO RLE"):
        to_rle(bad)


def test_to_rle_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read mask image"):
        to_rle(b"definitely not a png")
    with pytest.raises(InvalidInputError, match="is not a readable photo"):
        to_rle(tmp_path / "missing.png")
    with pytest.raises(InvalidInputError, match="unsupported mask type int"):
        to_rle(5)


# ---------------------------------------------------------------- Region


def test_region_derives_box_from_mask(blob: np.ndarray) -> None:
    region = Region.model_validate({"mask": blob, "category": "dog"})
    assert region.box == (0.0, 5.0, 35.0, 26.0)
    assert region.mask == encode_rle(blob)
    from_dict = Region.model_validate({"mask": {"size": [30, 40], "counts": encode_rle(blob).counts}})
    assert from_dict.box == region.box


def test_region_box_must_agree_with_mask(blob: np.ndarray) -> None:
    # within a pixel (inclusive vs exclusive edges) is agreement; the mask's box wins
    assert Region.model_validate({"mask": blob, "box": (0, 5, 34, 25)}).box == (0.0, 5.0, 35.0, 26.0)
    with pytest.raises(ValueError, match="does not match its mask"):
        Region.model_validate({"mask": blob, "box": (100, 100, 200, 200)})


def test_region_with_empty_or_invalid_mask_raises() -> None:
    with pytest.raises(ValueError, match="mask is empty"):
        Region.model_validate({"mask": np.zeros((4, 4), dtype=bool)})
    with pytest.raises(ValueError, match="RLE counts cover 3 pixels"):
        Region.model_validate({"mask": {"size": [2, 2], "counts": [1, 2]}})


def test_region_round_trips_through_json(blob: np.ndarray) -> None:
    region = Region.model_validate({"mask": blob, "category": "dog", "info": "Bella"})
    again = Region.model_validate_json(region.model_dump_json())
    assert again == region


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((10, 10, 5, 20), "empty or inverted"),
        ((10, 10, 20, 5), "empty or inverted"),
        ((10, 10, 10, 20), "empty or inverted"),
        ((float("nan"), 0, 10, 10), "non-finite"),
        ((0, 0, float("inf"), 10), "non-finite"),
    ],
)
def test_region_rejects_bad_boxes(box: tuple[float, float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Region(box=box)


def test_region_category_is_normalised() -> None:
    assert Region(box=(0, 0, 1, 1), category="  Golden   Retriever ").category == "golden retriever"
    with pytest.raises(ValueError, match="category is empty"):
        Region(box=(0, 0, 1, 1), category="   ")


# ---------------------------------------------------------------- check_box


def test_check_box_strict_accepts_and_keeps_inside_boxes() -> None:
    assert check_box((10, 20, 110, 220), (640, 480), strict=True) == (10, 20, 110, 220)
    assert check_box((0, 0, 640, 480), (640, 480), strict=True) == (0, 0, 640, 480)
    # sub-pixel overshoot is within tolerance and clamped
    assert check_box((-0.5, -1, 640.7, 481), (640, 480), strict=True) == (0.0, 0.0, 640, 480)


@pytest.mark.parametrize(
    "box",
    [
        (100, 50, 300, 500),  # y2 past the bottom (x,y,w,h read as corners)
        (500, 100, 700, 200),  # x2 past the right edge
        (-5, 10, 100, 100),
        (10, 10, 999, 999),  # 0..1000 grid coordinates
        (float("nan"), 10, 100, 100),
    ],
)
def test_check_box_strict_refuses_boxes_outside(box: tuple[float, float, float, float]) -> None:
    with pytest.raises(InvalidInputError, match="outside the 640x480 image") as info:
        check_box(box, (640, 480), strict=True)
    message = str(info.value)
    assert "x1,y1,x2,y2" in message and "x,y,w,h" in message and "0..1000" in message
    assert "\n" not in message


def test_check_box_non_strict_clamps() -> None:
    assert check_box((-10, -5, 1200, 800), (1000, 700), strict=False) == (0.0, 0.0, 1000, 700)
    assert check_box((990, 690, 1010, 710), (1000, 700), strict=False) == (990, 690, 1000, 700)


@pytest.mark.parametrize(
    "box",
    [
        (1100, 10, 1200, 50),  # entirely right of the image
        (10, -50, 100, -1),  # entirely above
        (10, 10, 10.5, 20),  # under a pixel wide
        (float("nan"), 10, 100, 100),
        (10, 10, 100, float("nan")),
    ],
)
def test_check_box_without_area_raises(box: tuple[float, float, float, float]) -> None:
    with pytest.raises(InvalidInputError, match="has no area inside the 1000x700 image"):
        check_box(box, (1000, 700), strict=False)


# ---------------------------------------------------------------- parse_region_spec


def test_parse_region_spec_full() -> None:
    region = parse_region_spec("10,20,110,220:dog:Bella, 2 years old")
    assert region.box == (10.0, 20.0, 110.0, 220.0)
    assert region.category == "dog"
    assert region.info == "Bella, 2 years old"
    assert region.source == "user"


def test_parse_region_spec_partitions_on_the_first_two_colons() -> None:
    region = parse_region_spec("1,2,3,4:person:Note: likes jazz: a lot")
    assert region.category == "person"
    assert region.info == "Note: likes jazz: a lot"


@pytest.mark.parametrize(
    ("spec", "category", "info"),
    [
        ("10,20,110,220", "object", None),
        ("10,20,110,220:", "object", None),
        ("10,20,110,220:dog", "dog", None),
        ("10,20,110,220:dog:", "dog", None),
        ("10,20,110,220:   :  ", "object", None),
        ("10,20,110,220::just info", "object", "just info"),
        (" 10 , 20.5 , 110 , 220 : Golden Retriever :  Max  ", "golden retriever", "Max"),
    ],
)
def test_parse_region_spec_optional_parts(spec: str, category: str, info: str | None) -> None:
    region = parse_region_spec(spec)
    assert region.category == category
    assert region.info == info


def test_parse_region_spec_passes_source_through() -> None:
    assert parse_region_spec("1,2,3,4:face", source="face").source == "face"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "does not start with four numbers"),
        ("dog:Bella", "does not start with four numbers"),
        ("10,20,110:dog", "does not start with four numbers"),
        ("10,20,110,220,5:dog", "does not start with four numbers"),
        ("a,b,c,d:dog", "does not start with four numbers"),
        ("10 20 110 220:dog", "does not start with four numbers"),
        ("110,20,10,220:dog", "empty or inverted"),
        ("10,20,110,20:dog", "empty or inverted"),
        ("nan,20,110,220", "non-finite"),
        ("10,20,inf,220", "non-finite"),
    ],
)
def test_parse_region_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        parse_region_spec(spec)
    text = str(info.value)
    assert "\n" not in text
    assert repr(spec) in text
