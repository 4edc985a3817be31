"""Open-vocabulary object detection (OWLv2 or Grounding DINO) queried with category names.

As in RAP, the detector is asked only for the categories the user's memory holds ("dog", "mug"),
so it finds exactly the things recognition can name. Weights load lazily on the first `detect` and
once per process (`rcmu_agent.model_cache`), shared by every detector built for the same (model, device).

The tokenizer and image processor are composed here instead of through the combined `*Processor`
classes, so nothing depends on torchvision; OWLv2's square padding and Grounding DINO's phrase
tokens are handled explicitly, and every box comes back in the original photo's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rcmu_agent import model_cache
from rcmu_agent.errors import InvalidInputError, ModelLoadError
from rcmu_agent.hub import hub_kwargs, load_config, load_vision_checkpoint
from rcmu_agent.regions import check_box
from rcmu_agent.schema import Region, normalize_category

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.settings import Settings

__all__ = ["DETECTOR_FIX", "SUPPORTED_DETECTORS", "ObjectDetector", "nms"]

log = logging.getLogger(__name__)

SUPPORTED_DETECTORS = ("owlv2", "grounding-dino")
DETECTOR_FIX = (
    "set RCMU_OBJECT_DETECTOR to a local directory holding the model, or to an empty string to turn "
    "object detection off"
)
NMS_IOU = 0.5


@dataclass(frozen=True)
class _Loaded:
    """Everything one detector checkpoint needs at inference time."""

    kind: str
    model: Any
    tokenizer: Any
    image_processor: Any
    device: str
    max_text_len: int


def _config(model: str, hub: dict[str, Any] | None = None) -> Any:
    """The checkpoint's config, checked to be a supported detector; every failure is a `ModelLoadError`."""
    if hub is None:
        hub = hub_kwargs(model, what="object detector", fix=DETECTOR_FIX)
    return load_config(
        model,
        what="object detector",
        fix=DETECTOR_FIX,
        kinds=SUPPORTED_DETECTORS,
        kind_name="an open-vocabulary detector (OWLv2 or Grounding DINO)",
        hub=hub,
    )


def _load(model: str, device: str) -> _Loaded:
    """The checkpoint, from the one model cache (loaded there on first use)."""
    return model_cache.get_or_load(ObjectDetector, model, (device,), lambda: _load_now(model, device))


def _load_now(model: str, device: str) -> _Loaded:
    """Load the checkpoint, mapping every failure to `ModelLoadError`."""
    hub = hub_kwargs(model, what="object detector", fix=DETECTOR_FIX)
    config = _config(model, hub)
    kind = str(config.model_type)
    if kind == "owlv2":
        from transformers import Owlv2ForObjectDetection as model_class
    else:
        from transformers import GroundingDinoForObjectDetection as model_class  # type: ignore[assignment]
    net, tokenizer, image_processor = load_vision_checkpoint(
        model_class, model, device, what="object detector", fix=DETECTOR_FIX, hub=hub
    )
    max_text_len = int(config.text_config.max_position_embeddings) if kind == "owlv2" else int(config.max_text_len)
    log.info("loaded %s detector %s on %s", kind, model, device)
    return _Loaded(kind, net, tokenizer, image_processor, device, max_text_len)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    Detectors propose many near-identical boxes for one object (OWLv2 one per patch); without this
    the prompt would list the same dog five times. Written in numpy because torchvision is absent.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _labels(categories: Sequence[str]) -> list[str]:
    """Normalise as `Region.category` does (lowercase, single spaces), dropping blanks and repeats."""
    labels = (normalize_category(c) for c in categories)
    return list(dict.fromkeys(label for label in labels if label))


class ObjectDetector:
    """Find the given categories in a photo; boxes in original pixels, source "object"."""

    def __init__(self, model: str, *, device: str = "auto", score_threshold: float = 0.3) -> None:
        from rcmu_agent.backends.hf import pick_device

        if not model or not model.strip():
            raise ModelLoadError("no object detector configured", DETECTOR_FIX)
        self.model = model.strip()
        self.device = pick_device(device)
        self.score_threshold = _check_threshold(score_threshold)

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectDetector | None:
        """The configured detector, or None when `RCMU_OBJECT_DETECTOR` is empty (detection off)."""
        if not settings.object_detector:
            return None
        return cls(settings.object_detector, device=settings.device, score_threshold=settings.object_score_threshold)

    def check(self) -> None:
        """Raise `ModelLoadError` now if the checkpoint cannot load; cheap (its config only)."""
        if model_cache.peek(ObjectDetector, self.model, (self.device,)) is None:
            _config(self.model)

    def __repr__(self) -> str:
        return f"ObjectDetector({self.model!r}, device={self.device!r}, score_threshold={self.score_threshold})"

    def load(self) -> None:
        """Load the weights now (a server warming up); `detect` otherwise does it on first use."""
        _load(self.model, self.device)

    def detect(
        self, image: Image.Image, categories: Sequence[str], *, score_threshold: float | None = None
    ) -> list[Region]:
        """Regions for `categories` scoring above the threshold, NMS'd per category, best first.

        `category` is the query label that scored best for the box. No categories: [] at once, without
        loading anything, since there is nothing the memory could recognise.
        """
        labels = _labels(categories)
        if not labels:
            return []
        threshold = self.score_threshold if score_threshold is None else _check_threshold(score_threshold)
        loaded = _load(self.model, self.device)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if loaded.kind == "owlv2":
            boxes, scores, label_ids = _run_owlv2(loaded, rgb, labels, threshold)
        else:
            boxes, scores, label_ids = _run_grounding_dino(loaded, rgb, labels, threshold)
        return _to_regions(boxes, scores, label_ids, labels, rgb.size)


def _check_threshold(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"score threshold {value} is outside 0..1", "give a value such as 0.3")
    return float(value)


def _run_owlv2(
    loaded: _Loaded, image: Image.Image, labels: list[str], threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OWLv2 scores every patch against every label; one forward pass for all labels."""
    import torch

    text = loaded.tokenizer(
        labels, padding="max_length", truncation=True, max_length=loaded.max_text_len, return_tensors="pt"
    )
    pixels = loaded.image_processor(images=image, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        outputs = loaded.model(
            input_ids=text["input_ids"].to(loaded.device),
            attention_mask=text["attention_mask"].to(loaded.device),
            pixel_values=pixels.to(loaded.device, torch.float32),
        )
    # The processor pads the photo to a square at the bottom/right before resizing; OWLv2's own
    # post-processing scales by max(height, width), which is exactly what maps boxes back to the
    # original pixels when given the original (height, width).
    result = loaded.image_processor.post_process_object_detection(
        outputs, threshold=threshold, target_sizes=[(image.height, image.width)]
    )[0]
    return _numpy(result["boxes"]), _numpy(result["scores"]), _numpy(result["labels"]).astype(np.int64)


def _run_grounding_dino(
    loaded: _Loaded, image: Image.Image, labels: list[str], threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grounding DINO reads one prompt "cat. dog." and scores each box against each token.

    A label's score is its best token's probability, found through the tokenizer's character offsets,
    so the label comes back exactly as queried rather than re-decoded from word pieces.
    """
    import torch

    spans: list[tuple[int, int]] = []
    prompt = ""
    for label in labels:
        spans.append((len(prompt), len(prompt) + len(label)))
        prompt += label + ". "
    prompt = prompt.strip()
    text = loaded.tokenizer(
        [prompt],
        truncation=True,
        max_length=loaded.max_text_len,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets = text.pop("offset_mapping")[0].tolist()
    pixels = loaded.image_processor(images=image, return_tensors="pt")
    with torch.inference_mode():
        outputs = loaded.model(
            **{k: v.to(loaded.device) for k, v in text.items()},
            pixel_values=pixels["pixel_values"].to(loaded.device, torch.float32),
            pixel_mask=pixels["pixel_mask"].to(loaded.device),
        )
    probs = outputs.logits[0].sigmoid().float().cpu().numpy()  # (queries, max_text_len)
    per_label = np.zeros((probs.shape[0], len(labels)), dtype=np.float32)
    for j, (start, end) in enumerate(spans):
        tokens = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start and i < probs.shape[1]]
        if tokens:  # a label cut off by truncation scores 0 and is never reported
            per_label[:, j] = probs[:, tokens].max(axis=1)
    label_ids = per_label.argmax(axis=1)
    scores = per_label.max(axis=1)
    # Boxes are relative to the unpadded image (one image: no batch padding), centre format.
    cx, cy, w, h = outputs.pred_boxes[0].float().cpu().numpy().T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    boxes *= np.array([image.width, image.height, image.width, image.height], dtype=np.float32)
    keep = scores > threshold
    return boxes[keep], scores[keep], label_ids[keep]


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(value.detach().float().cpu().numpy() if hasattr(value, "detach") else value)


def _to_regions(
    boxes: np.ndarray, scores: np.ndarray, label_ids: np.ndarray, labels: list[str], size: tuple[int, int]
) -> list[Region]:
    """Clamp to the photo (dropping boxes with no area inside it), NMS per label, sort by score."""
    kept_boxes: list[tuple[float, float, float, float]] = []
    kept_scores: list[float] = []
    kept_labels: list[int] = []
    for box, score, label in zip(boxes.reshape(-1, 4).tolist(), scores.tolist(), label_ids.tolist(), strict=True):
        try:
            kept_boxes.append(check_box((box[0], box[1], box[2], box[3]), size, strict=False))
        except InvalidInputError:
            continue  # e.g. an OWLv2 box that lies wholly in the square padding
        kept_scores.append(float(score))
        kept_labels.append(int(label))
    regions: list[Region] = []
    box_array, score_array, label_array = (
        np.asarray(kept_boxes),
        np.asarray(kept_scores),
        np.asarray(kept_labels),
    )
    for label in sorted(set(kept_labels)):
        idx = np.flatnonzero(label_array == label)
        for i in idx[nms(box_array[idx], score_array[idx])]:
            regions.append(Region(box=kept_boxes[i], category=labels[label], score=kept_scores[i], source="object"))
    regions.sort(key=lambda r: -(r.score or 0.0))
    return regions
