"""Loading photos: real files, EXIF orientation, and every way an input can be broken or too big."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.images import image_to_data_url, load_image

pytestmark = pytest.mark.unit

ORIENTATION = 0x0112
W, H = 563, 331  # tests/data/two_people.jpg


@pytest.fixture(scope="module")
def two_people(small_photos: Path) -> Path:
    return small_photos / "two_people.jpg"


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: a few dozen bytes, never decodable in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- good inputs


def test_real_jpeg(two_people: Path) -> None:
    img = load_image(two_people)
    assert img.mode == "RGB"
    assert img.size == (W, H)
    # fully decoded: the pixels are there, not a lazy handle on a closed file
    assert np.asarray(img).shape == (H, W, 3)


def test_path_forms_are_equivalent(two_people: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = np.asarray(load_image(two_people))
    np.testing.assert_array_equal(np.asarray(load_image(str(two_people))), reference)
    np.testing.assert_array_equal(np.asarray(load_image(f"file://{two_people}")), reference)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "photo.jpg").write_bytes(two_people.read_bytes())
    np.testing.assert_array_equal(np.asarray(load_image("~/photo.jpg")), reference)


def test_bytes_input(two_people: Path) -> None:
    img = load_image(two_people.read_bytes())
    assert img.mode == "RGB" and img.size == (W, H)
    np.testing.assert_array_equal(np.asarray(img), np.asarray(load_image(two_people)))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "I;16"])
def test_pil_input_of_any_mode_becomes_rgb(mode: str) -> None:
    img = load_image(Image.new(mode, (31, 17)))
    assert img.mode == "RGB"
    assert img.size == (31, 17)


def test_non_rgb_file_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(np.arange(60, dtype=np.uint8).reshape(6, 10)).save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (10, 6)
    assert np.asarray(img)[5, 9].tolist() == [59, 59, 59]


# ---------------------------------------------------------------- EXIF orientation


def _sideways_jpeg() -> bytes:
    """40x20 stored pixels, left half red, right half blue, tagged Orientation=6 (rotate 90° clockwise)."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def _check_upright(img: Image.Image) -> None:
    assert img.size == (20, 40)  # width and height swapped
    pixels = np.asarray(img).astype(int)
    top, bottom = pixels[5, 10], pixels[35, 10]
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert img.getexif().get(ORIENTATION, 1) == 1  # not applied twice downstream


def test_exif_orientation_applied_for_files_and_bytes(tmp_path: Path) -> None:
    data = _sideways_jpeg()
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.size == (40, 20) and raw.getexif()[ORIENTATION] == 6
    path = tmp_path / "sideways.jpg"
    path.write_bytes(data)
    _check_upright(load_image(path))
    _check_upright(load_image(data))


def test_exif_orientation_applied_for_pil_input() -> None:
    with Image.open(io.BytesIO(_sideways_jpeg())) as opened:
        _check_upright(load_image(opened))


# ---------------------------------------------------------------- broken inputs


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(NotFoundError, match="does not exist") as info:
        load_image(missing)
    assert str(missing) in _one_line(info)
    with pytest.raises(NotFoundError):
        load_image(f"file://{missing}")


def test_directory_is_not_a_photo(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is not a regular file"):
        load_image(tmp_path)


def test_text_file_renamed_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are my holiday notes, not a photo\n")
    with pytest.raises(InvalidInputError, match="is not an image rcmu can read") as info:
        load_image(path)
    assert str(path) in _one_line(info)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidInputError) as info:
        load_image(path)
    _one_line(info)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02garbage" * 50,
        b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,  # JPEG magic, then noise
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,  # PNG magic, broken chunks
    ],
)
def test_corrupt_bytes(data: bytes) -> None:
    with pytest.raises(InvalidInputError) as info:
        load_image(data)
    assert "image bytes" in _one_line(info)


def test_truncated_jpeg(two_people: Path, tmp_path: Path) -> None:
    data = two_people.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="corrupt or truncated") as info:
        load_image(path)
    assert str(path) in _one_line(info)
    with pytest.raises(InvalidInputError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_corrupt_png_data(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[100:140] = b"\x00" * 40  # inside IDAT: the CRC no longer matches
    with pytest.raises(InvalidInputError) as info:
        load_image(bytes(data))
    _one_line(info)


def test_file_over_max_bytes(two_people: Path) -> None:
    size = two_people.stat().st_size
    with pytest.raises(InvalidInputError, match="MiB limit") as info:
        load_image(two_people, max_bytes=size - 1)
    assert "RCMU_MAX_IMAGE_BYTES" in _one_line(info)
    assert load_image(two_people, max_bytes=size).size == (W, H)


def test_bytes_over_max_bytes(two_people: Path) -> None:
    data = two_people.read_bytes()
    with pytest.raises(InvalidInputError, match="MiB limit") as info:
        load_image(data, max_bytes=1000)
    _one_line(info)


def test_small_max_pixels(two_people: Path) -> None:
    with pytest.raises(InvalidInputError, match=f"is {W}x{H}") as info:
        load_image(two_people, max_pixels=W * H - 1)
    assert "RCMU_MAX_IMAGE_PIXELS" in _one_line(info)
    assert load_image(two_people, max_pixels=W * H).size == (W, H)
    with Image.open(two_people) as opened, pytest.raises(InvalidInputError, match=f"is {W}x{H}"):
        load_image(opened, max_pixels=1000)


def test_header_claiming_more_than_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(9000, 9000))  # 81 MP, just under PIL's own bomb warning
    with pytest.raises(InvalidInputError, match="9000x9000 \\(81 MP\\), over the 80 MP limit") as info:
        load_image(path)
    _one_line(info)


def test_header_claiming_huge_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20000, 20000))
    assert path.stat().st_size < 100
    with pytest.raises(InvalidInputError) as info:
        load_image(path)
    assert str(path) in _one_line(info)
    # even with the pixel limit lifted, PIL's decompression-bomb guard is turned into our error
    with pytest.raises(InvalidInputError, match="too large to decode safely"):
        load_image(path, max_pixels=10**10)


# ---------------------------------------------------------------- data URLs


def test_image_to_data_url_round_trips_pixels_exactly() -> None:
    pixels = np.random.default_rng(7).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    url = image_to_data_url(Image.fromarray(pixels))
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    data = base64.b64decode(url.removeprefix(prefix), validate=True)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "PNG"
        np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), pixels)
    np.testing.assert_array_equal(np.asarray(load_image(data)), pixels)


def test_data_url_of_a_loaded_photo(two_people: Path) -> None:
    img = load_image(two_people)
    data = base64.b64decode(image_to_data_url(img).split(",", 1)[1])
    np.testing.assert_array_equal(np.asarray(load_image(data)), np.asarray(img))
