"""Photos real users have: iPhone HEIC, AVIF, 16-bit and other modes, animations — read the same way
by `ask`, `remember` and the library indexer, or refused with a clear, named error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.faces import FaceDetector
from rcmu_agent.images import PHOTO_SUFFIXES, load_image

NO_MODELS = {"object_detector": None, "image_embedding_model": None}


@pytest.fixture(scope="module")
def face(small_photos: Path) -> Image.Image:
    """Obama's reference photo, small (320x400): one clear face."""
    return load_image(small_photos / "obama.jpg")


def _encoded(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_decode_and_find_the_face(face: Image.Image, fmt: str) -> None:
    data = _encoded(face, fmt, quality=90)
    img = load_image(data)
    assert img.mode == "RGB" and img.size == face.size
    assert len(FaceDetector().detect(img)) == 1


@pytest.mark.integration
def test_sixteen_bit_grey_png_is_rescaled_not_clipped_to_white(face: Image.Image) -> None:
    grey8 = np.asarray(face.convert("L"), dtype=np.uint16)
    img16 = Image.fromarray(grey8 * 257)  # the same picture on 0..65535
    data = _encoded(img16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = load_image(data)
    pixels = np.asarray(img)[:, :, 0].astype(int)
    assert abs(pixels - grey8).max() <= 1  # what an 8-bit export would show
    assert len(FaceDetector().detect(img)) == 1


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["LA", "RGBA", "P", "CMYK", "1", "F", "I"])
def test_every_mode_becomes_rgb_of_the_same_size(face: Image.Image, mode: str) -> None:
    source = face.convert(mode)
    img = load_image(source)
    assert img.mode == "RGB" and img.size == face.size


@pytest.mark.unit
def test_transparent_pixels_become_white_not_black() -> None:
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(load_image(_encoded(clear, "PNG"))).min() == 255


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_an_animation_is_refused_with_a_clear_error(face: Image.Image, fmt: str) -> None:
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    data = _encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(InvalidInputError, match="has 2 frames") as raised:
        load_image(data)
    assert "still" in raised.value.fix


@pytest.mark.unit
def test_a_single_frame_gif_is_fine(face: Image.Image) -> None:
    assert load_image(_encoded(face, "GIF")).size == face.size


@pytest.mark.unit
def test_the_indexer_lists_every_photo_type_the_loader_reads() -> None:
    from rcmu_agent.memory.library._walk import PHOTO_SUFFIXES as LISTED

    assert LISTED is PHOTO_SUFFIXES
    assert {".heic", ".heif", ".avif", ".png", ".jpg"} <= PHOTO_SUFFIXES


@pytest.mark.integration
def test_remember_and_index_read_heic_and_sixteen_bit(face: Image.Image, tmp_path: Path) -> None:
    """The same formats through `remember` (several photos: the bad one is named) and `rcmu index`."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "iphone.heic").write_bytes(_encoded(face, "HEIF", quality=90))
    (photos / "scan.avif").write_bytes(_encoded(face, "AVIF", quality=90))
    grey = np.asarray(face.convert("L"), dtype=np.uint16) * 257
    (photos / "scan16.png").write_bytes(_encoded(Image.fromarray(grey), "PNG"))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assistant = Assistant(Settings(home=tmp_path / "home", **NO_MODELS))

    with pytest.raises(InvalidInputError) as raised:
        assistant.remember(
            "Barack Obama", info="44th president", photos=[photos / "iphone.heic", tmp_path / "broken.jpg"]
        )
    assert "broken.jpg" in raised.value.problem and "(photo 2 of 2)" in raised.value.problem
    assert assistant.entities() == []  # nothing half-written

    entity = assistant.remember("Barack Obama", info="44th president", photos=sorted(photos.iterdir()))
    assert len(entity.photos) == 3
    report = assistant.index_library(photos)
    assert report.added == 3 and not report.skipped, report
    hits = assistant.search_photos(people=["Barack Obama"])
    assert sorted(Path(h.path).name for h in hits) == ["iphone.heic", "scan.avif", "scan16.png"]
