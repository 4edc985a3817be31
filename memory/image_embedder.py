"""CLIP image (and text) embeddings, used to recognise objects by their nearest reference photo.

Faces have dlib descriptors; pets and belongings do not, so a crop of each detected object is
embedded with CLIP and compared with the embeddings of the user's reference photos. Rows are
L2-normalised, so a dot product is the cosine similarity `Settings.object_threshold` is about.

Weights load lazily and once per process (`rcmu_agent.model_cache`), shared by every embedder
built for the same (model, device). The tokenizer and image processor are composed rather than
loaded through `CLIPProcessor`, so nothing depends on torchvision.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rcmu_agent import model_cache
from rcmu_agent.errors import InvalidInputError, ModelLoadError
from rcmu_agent.hub import hub_kwargs, load_config, load_vision_checkpoint
from rcmu_agent.regions import check_box

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.schema import Box
    from rcmu_agent.settings import Settings

__all__ = ["EMBEDDER_FIX", "ImageEmbedder"]

log = logging.getLogger(__name__)

EMBEDDER_FIX = (
    "set RCMU_IMAGE_EMBEDDING_MODEL to a local directory holding a CLIP model, or to an empty string "
    "to turn object recognition off"
)
SUPPORTED_EMBEDDERS = ("clip",)


@dataclass(frozen=True)
class _Loaded:
    model: Any
    tokenizer: Any
    image_processor: Any
    device: str
    dim: int
    max_text_len: int


def _config(model: str, hub: dict[str, Any] | None = None) -> Any:
    """The checkpoint's config, checked to be a CLIP model; every failure is a `ModelLoadError`."""
    if hub is None:
        hub = hub_kwargs(model, what="image embedding model", fix=EMBEDDER_FIX)
    return load_config(
        model,
        what="image embedding model",
        fix=EMBEDDER_FIX,
        kinds=SUPPORTED_EMBEDDERS,
        kind_name="a CLIP model",
        hub=hub,
    )


def _load(model: str, device: str) -> _Loaded:
    """The checkpoint, from the one model cache (loaded there on first use)."""
    return model_cache.get_or_load(ImageEmbedder, model, (device,), lambda: _load_now(model, device))


def _load_now(model: str, device: str) -> _Loaded:
    from transformers import CLIPModel

    hub = hub_kwargs(model, what="image embedding model", fix=EMBEDDER_FIX)
    config = _config(model, hub)
    net, tokenizer, image_processor = load_vision_checkpoint(
        CLIPModel, model, device, what="image embedding model", fix=EMBEDDER_FIX, hub=hub
    )
    log.info("loaded image embedder %s on %s", model, device)
    dim, max_text_len = int(config.projection_dim), int(config.text_config.max_position_embeddings)
    return _Loaded(net, tokenizer, image_processor, device, dim, max_text_len)


def _features(output: Any) -> Any:
    """`get_*_features` returns a tensor in transformers 4 and a pooled output object in 5."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ImageEmbedder:
    """L2-normalised CLIP embeddings of photos (and of texts, for text→image search)."""

    batch_size = 32

    def __init__(self, model: str, *, device: str = "auto") -> None:
        from rcmu_agent.backends.hf import pick_device

        if not model or not model.strip():
            raise ModelLoadError("no image embedding model configured", EMBEDDER_FIX)
        self._model = model.strip()
        self.device = pick_device(device)
        self._dim: int | None = None

    def check(self) -> None:
        """Raise `ModelLoadError` now if the checkpoint cannot load; cheap (its config only)."""
        if model_cache.peek(ImageEmbedder, self._model, (self.device,)) is None:
            _config(self._model)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageEmbedder | None:
        """The configured embedder, or None when `RCMU_IMAGE_EMBEDDING_MODEL` is empty (recognition off)."""
        if not settings.image_embedding_model:
            return None
        return cls(settings.image_embedding_model, device=settings.device)

    def __repr__(self) -> str:
        return f"ImageEmbedder({self._model!r}, device={self.device!r})"

    @property
    def model_name(self) -> str:
        """The id or directory the weights come from; the memory stores it to refuse mixed collections."""
        return self._model

    @property
    def dim(self) -> int:
        """Embedding width (the projection dim); reads only the config when the weights aren't loaded."""
        if self._dim is None:
            cached = model_cache.peek(ImageEmbedder, self._model, (self.device,))
            self._dim = cached.dim if cached else int(_config(self._model).projection_dim)
        return self._dim

    def load(self) -> None:
        """Load the weights now (a server warming up); `embed` otherwise does it on first use."""
        _load(self._model, self.device)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (n, dim), unit rows; n == 0 gives (0, dim) without loading the weights."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        loaded = _load(self._model, self.device)
        rows: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im if im.mode == "RGB" else im.convert("RGB") for im in images[start : start + self.batch_size]]
            pixels = loaded.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                out = loaded.model.get_image_features(pixel_values=pixels.to(loaded.device, torch.float32))
            rows.append(_normalise(_features(out)))
        return np.concatenate(rows, axis=0)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (n, dim), unit rows, in the same space as `embed` (e.g. "a photo of a red mug")."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        loaded = _load(self._model, self.device)
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [str(t) for t in texts[start : start + self.batch_size]]
            tokens = loaded.tokenizer(
                batch, padding=True, truncation=True, max_length=loaded.max_text_len, return_tensors="pt"
            )
            with torch.inference_mode():
                out = loaded.model.get_text_features(
                    input_ids=tokens["input_ids"].to(loaded.device),
                    attention_mask=tokens["attention_mask"].to(loaded.device),
                )
            rows.append(_normalise(_features(out)))
        return np.concatenate(rows, axis=0)

    @staticmethod
    def crop(image: Image.Image, box: Box) -> Image.Image:
        """The region's pixels (box clamped to the photo, edges rounded outwards), in RGB."""
        x1, y1, x2, y2 = check_box(box, image.size, strict=False)
        left, top = math.floor(x1), math.floor(y1)
        right, bottom = min(math.ceil(x2), image.width), min(math.ceil(y2), image.height)
        if right <= left or bottom <= top:
            raise InvalidInputError(f"box {box} covers no pixel of the {image.width}x{image.height} image")
        region = image.crop((left, top, right, bottom))
        return region if region.mode == "RGB" else region.convert("RGB")


def _normalise(features: Any) -> np.ndarray:
    vectors = features.float().cpu().numpy().astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
