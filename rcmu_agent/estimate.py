"""How long the first token takes for a photo, from arithmetic rather than a run of the model.

Qwen2-VL's compute for one photo is almost all matmuls whose sizes follow from its config and the
photo's visual tokens, so the time is their floating-point operations over the machine's matmul
speed. Each stage reaches only a fraction of the bare matmul peak (attention, norms and activations
between the matmuls); those fractions were measured by `benchmarks/bench_real_size.py` and are
kept here. `rcmu doctor` prints the result for a 12 MP phone photo; the benchmark checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcmu_agent.visual_budget import visual_tokens

__all__ = [
    "OUTSIDE_MODEL_S",
    "PHONE_PHOTO",
    "PREFILL_EFFICIENCY",
    "VISION_EFFICIENCY",
    "Dims",
    "Estimate",
    "estimate_first_token",
    "model_dims",
    "qwen2vl_flops",
]

PHONE_PHOTO = (4032, 3024)  # 12 MP, 4:3
TEXT_TOKENS = 200  # chat template, a context of a few regions and a question
# Fraction of the measured matmul peak each stage reaches (fp32, 2 cores, SDPA): one real-size vision block
# on 4,920 patches and one decoder layer on 1,321 tokens, timed between two matmul measurements, three
# rounds on the shared development machine (medians: vision 0.92 of peak, prefill 0.95).
VISION_EFFICIENCY = 0.9
PREFILL_EFFICIENCY = 0.95
# Seconds outside the model on a 12 MP photo: JPEG decode, face detection at upsample 0, the resize.
OUTSIDE_MODEL_S = 1.5


@dataclass(frozen=True)
class Dims:
    """The shapes that decide Qwen2-VL's compute (defaults: Qwen2-VL-2B, which RC-Qwen2VL-2b keeps)."""

    vision_dim: int = 1280
    vision_depth: int = 32
    vision_mlp_ratio: float = 4.0
    vision_out: int = 1536
    patch: int = 14
    temporal_patch: int = 2
    merge: int = 2
    hidden: int = 1536
    intermediate: int = 8960
    layers: int = 28
    heads: int = 12
    kv_heads: int = 2


def model_dims(config: dict[str, Any] | None) -> Dims:
    """Dims from a Qwen2-VL `config.json` (as a dict); the 2B model's when None."""
    if not config:
        return Dims()
    text = config.get("text_config") or config
    vision = config.get("vision_config") or {}
    base = Dims()
    return Dims(
        vision_dim=int(vision.get("embed_dim", base.vision_dim)),
        vision_depth=int(vision.get("depth", base.vision_depth)),
        vision_mlp_ratio=float(vision.get("mlp_ratio", base.vision_mlp_ratio)),
        vision_out=int(vision.get("hidden_size", base.vision_out)),
        patch=int(vision.get("patch_size", base.patch)),
        temporal_patch=int(vision.get("temporal_patch_size", base.temporal_patch)),
        merge=int(vision.get("spatial_merge_size", base.merge)),
        hidden=int(text.get("hidden_size", base.hidden)),
        intermediate=int(text.get("intermediate_size", base.intermediate)),
        layers=int(text.get("num_hidden_layers", base.layers)),
        heads=int(text.get("num_attention_heads", base.heads)),
        kv_heads=int(text.get("num_key_value_heads", base.kv_heads)),
    )


def qwen2vl_flops(dims: Dims, image_tokens: int, text_tokens: int = TEXT_TOKENS) -> tuple[float, float]:
    """(vision encoder, prefill) floating-point operations for one image of `image_tokens` tokens in a
    prompt with `text_tokens` more: 2 per multiply-add of every matmul, attention's included (causal
    attention in the prefill counts half of the square)."""
    d, p = dims.vision_dim, image_tokens * dims.merge**2  # patches: 2x2 of them merge into one token
    mlp = int(d * dims.vision_mlp_ratio)
    patch_in = 3 * dims.temporal_patch * dims.patch**2
    merged = d * dims.merge**2
    vision = (
        2 * p * patch_in * d
        + dims.vision_depth * (2 * p * d * (4 * d + 2 * mlp) + 4 * p * p * d)
        + 2 * image_tokens * merged * (merged + dims.vision_out)
    )
    n, h = image_tokens + text_tokens, dims.hidden
    kv = 2 * h * dims.kv_heads // dims.heads  # k and v projections together
    per_layer = 2 * n * h * (2 * h + kv) + 2 * n * h * dims.intermediate * 3 + 2 * n * n * h
    return float(vision), float(dims.layers * per_layer)


@dataclass(frozen=True)
class Estimate:
    """Time to the first token for one photo, and what it is made of."""

    image_tokens: int
    vision_tflop: float
    prefill_tflop: float
    peak_gflops: float
    vision_s: float
    prefill_s: float
    outside_s: float

    @property
    def first_token_s(self) -> float:
        return self.vision_s + self.prefill_s + self.outside_s


def estimate_first_token(
    dims: Dims, peak_gflops: float, *, min_pixels: int, max_pixels: int, size: tuple[int, int] = PHONE_PHOTO
) -> Estimate:
    """The time to the first token for a `size` photo under the budget, at `peak_gflops` of matmul."""
    tokens = visual_tokens(*size, min_pixels=min_pixels, max_pixels=max_pixels)
    vision, prefill = qwen2vl_flops(dims, tokens)
    return Estimate(
        image_tokens=tokens,
        vision_tflop=vision / 1e12,
        prefill_tflop=prefill / 1e12,
        peak_gflops=peak_gflops,
        vision_s=vision / (peak_gflops * 1e9 * VISION_EFFICIENCY),
        prefill_s=prefill / (peak_gflops * 1e9 * PREFILL_EFFICIENCY),
        outside_s=OUTSIDE_MODEL_S,
    )
