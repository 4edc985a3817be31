"""Loading photos safely: one place that turns paths, bytes or PIL images into a checked RGB image.

Everything downstream (boxes, the 0..999 grid, face detection) assumes the image as displayed, so
EXIF orientation is applied here, once.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from rcmu_agent.errors import InvalidInputError, NotFoundError

__all__ = ["ImageSource", "image_to_data_url", "load_image"]

ImageSource = str | Path | bytes | Image.Image


def load_image(source: ImageSource, *, max_bytes: int = 50 << 20, max_pixels: int = 80_000_000) -> Image.Image:
    """Open, fully decode and check a photo; return it as RGB, upright.

    Corrupt, truncated, non-image and oversized inputs raise `InvalidInputError` naming the file and
    the limit, before anything is written anywhere.
    """
    if isinstance(source, Image.Image):
        name, img = "image", source
        _check_pixels(name, img.size, max_pixels)
        img.load()
    else:
        name, data = _read_bytes(source, max_bytes)
        img = _decode(name, data, max_pixels)
    img = ImageOps.exif_transpose(img) or img
    return img if img.mode == "RGB" else img.convert("RGB")


def _read_bytes(source: str | Path | bytes, max_bytes: int) -> tuple[str, bytes]:
    if isinstance(source, bytes):
        if len(source) > max_bytes:
            raise InvalidInputError(
                f"image is {len(source) / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit",
                "resize it, or raise RCMU_MAX_IMAGE_BYTES",
            )
        return "image bytes", source
    path = Path(str(source).removeprefix("file://")).expanduser()
    if not path.is_file():
        raise NotFoundError(f"photo {path} does not exist", "check the path")
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidInputError(
            f"{path} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit",
            "resize it, or raise RCMU_MAX_IMAGE_BYTES",
        )
    return str(path), path.read_bytes()


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidInputError(f"{name} has no pixels ({width}x{height})", "give a real photo")
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit",
            "downscale it, or raise RCMU_MAX_IMAGE_PIXELS",
        )


def _decode(name: str, data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_pixels(name, img.size, max_pixels)  # before decoding: a bomb never gets allocated
            img.load()
    except InvalidInputError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidInputError(f"{name} is not an image PIL can read", "give a JPEG, PNG or WebP file") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInputError(f"{name} is too large to decode safely ({exc})", "downscale it") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(
            f"{name} is corrupt or truncated ({exc})", "re-export or re-download the photo"
        ) from exc
    return img


def image_to_data_url(img: Image.Image) -> str:
    """PNG data URL: lossless, so a server sees exactly the pixels the local backend would."""
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=1)  # lossless at any level; 1 is the fastest
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
