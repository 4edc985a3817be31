"""How many pixels (and so visual tokens) a photo costs the vision-language model.

Qwen2-VL sees an image as 14-px patches merged 2x2 into one token, after resizing it so both sides
are multiples of 28 and its area falls inside [min_pixels, max_pixels]. Left at the processor's own
upper bound (12.8 MP), a phone photo becomes ~15,000 tokens — hours of CPU before the first word —
so the agent sets a budget and applies it everywhere a photo reaches a model: the transformers
processor (answering and training alike, through `TransformersVLM.encode`), the image an
OpenAI-compatible server receives, and the token count `--context-only` reports without any model.

Boxes never move: the prompt's 0..999 coordinates are fractions of the photo, whatever its size.
"""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING

from rcmu_agent.errors import InvalidInputError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_PIXELS",
    "FACTOR",
    "budget_size",
    "fit_to_budget",
    "jpeg_data_url",
    "visual_tokens",
]

PATCH, MERGE = 14, 2
FACTOR = PATCH * MERGE  # one visual token covers a 28x28 square
# The Qwen2-VL model card's suggested range, 256 to 1280 tokens per image.
DEFAULT_MIN_PIXELS = 256 * FACTOR * FACTOR
DEFAULT_MAX_PIXELS = 1280 * FACTOR * FACTOR
MAX_ASPECT = 200  # Qwen2-VL's processor refuses anything more elongated


def budget_size(
    width: int, height: int, *, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """(width, height) the model sees: multiples of 28, aspect kept, area within the budget.

    The same rule as Qwen2-VL's processor, so a count computed here equals the processor's grid:
    round each side to the nearest multiple; if that overshoots `max_pixels`, scale down (flooring
    to multiples); if it falls short of `min_pixels`, scale up (ceiling to multiples).
    """
    if width < 1 or height < 1:
        raise InvalidInputError(f"image has no pixels ({width}x{height})", "give a real photo")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InvalidInputError(
            f"image is {width}x{height}, more than {MAX_ASPECT}:1", "crop it to a less elongated shape"
        )
    w, h = _nearest(width), _nearest(height)
    if w * h > max_pixels:
        shrink = math.sqrt(width * height / max_pixels)
        w, h = (max(FACTOR, math.floor(side / shrink / FACTOR) * FACTOR) for side in (width, height))
    elif w * h < min_pixels:
        grow = math.sqrt(min_pixels / (width * height))
        w, h = (math.ceil(side * grow / FACTOR) * FACTOR for side in (width, height))
    return w, h


def _nearest(side: int) -> int:
    return round(side / FACTOR) * FACTOR  # Python's round: halves to even, as the processor does


def visual_tokens(
    width: int, height: int, *, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> int:
    """Image tokens in the prompt (the `<|image_pad|>` count) for a width x height photo."""
    w, h = budget_size(width, height, min_pixels=min_pixels, max_pixels=max_pixels)
    return (w // FACTOR) * (h // FACTOR)


def fit_to_budget(
    image: Image.Image, *, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """The photo at exactly the size the model would see it (the same image when already there).

    Sent at this size, a Qwen2-VL server's own resize is a no-op, so it sees what the local
    processor would; bicubic, as that processor resamples.
    """
    from PIL import Image as PILImage

    size = budget_size(image.width, image.height, min_pixels=min_pixels, max_pixels=max_pixels)
    if size == image.size:
        return image
    return image.resize(size, PILImage.Resampling.BICUBIC, reducing_gap=3.0)


def jpeg_data_url(image: Image.Image, quality: int = 92) -> str:
    """A JPEG data URL: at budget size a photo is ~0.2 MB this way against several MB of PNG."""
    buffer = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    rgb.save(buffer, format="JPEG", quality=quality, subsampling=0)  # 4:4:4 keeps thin edges crisp
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
