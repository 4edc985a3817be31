"""A phone-sized photo (12 MP) through the parts that used to scale with its pixels.

`two_people.jpg` cropped to 4:3 and upscaled to 4032x3024, then:

1. visual tokens the model sees: the processor's own range (3,136..12,845,056 pixels) against the
   budget (RCMU_MAX_PIXELS, default 1280*28*28). Target: <= 1,280.
2. the image an OpenAI-compatible server receives: full-size PNG (before) against the budget-sized
   JPEG (now), bytes and encode time.
3. face detection as configured (upsampling chosen from the size) against bare dlib HOG at upsample 1
   on the same array, best of interleaved rounds, with the faces compared. Target: <= 0.3x, same faces.
4. with --model: a randomly initialised Qwen2-VL of the real 2B size (compute does not depend on weight
   values; minutes, not for CI): vision + prefill seconds within the budget, measured whole; without
   it, the first vision block and the first decoder layer over the full sequence are timed and scaled
   by the block/layer counts (the whole would take hours on a CPU).

    python benchmarks/bench_real_size.py [--rounds 3] [--model]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENE = DATA / "faces" / "scenes" / "two_people.jpg"
UNBOUNDED = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16384}  # Qwen2-VL-2B-Instruct's preprocessor_config


def phone_photo(source: Path = SCENE, size: tuple[int, int] = (4032, 3024)) -> Any:
    """`source` cropped (centred) to the aspect of `size`, then upscaled to it."""
    from PIL import Image

    from rcmu_agent.images import load_image

    img = load_image(source)
    aspect = size[0] / size[1]
    if img.width / img.height > aspect:
        width = round(img.height * aspect)
        box = ((img.width - width) // 2, 0, (img.width - width) // 2 + width, img.height)
    else:
        height = round(img.width / aspect)
        box = (0, (img.height - height) // 2, img.width, (img.height - height) // 2 + height)
    return img.crop(box).resize(size, Image.Resampling.BICUBIC)


def tokens() -> None:
    from rcmu_agent.settings import Settings
    from rcmu_agent.visual_budget import visual_tokens

    s = Settings()
    before = visual_tokens(4032, 3024, **UNBOUNDED)
    now = visual_tokens(4032, 3024, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
    print(f"1. visual tokens, 12 MP photo: {before} unbounded -> {now} within the budget (target <= 1280); "
          f"ratio {now / before:.3f}")  # fmt: skip


def payload(photo: Any) -> None:
    from rcmu_agent.visual_budget import fit_to_budget, jpeg_data_url

    start = time.perf_counter()
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG", compress_level=1)  # what the backend sent before
    png_s, png_bytes = time.perf_counter() - start, buffer.tell()
    start = time.perf_counter()
    url = jpeg_data_url(fit_to_budget(photo))
    jpeg_s, jpeg_bytes = time.perf_counter() - start, len(url) * 3 // 4
    print(f"2. image for an OpenAI-compatible server: PNG {png_bytes / 1e6:.1f} MB in {png_s:.2f} s -> "
          f"budget JPEG {jpeg_bytes / 1e6:.2f} MB in {jpeg_s:.2f} s; bytes ratio {jpeg_bytes / png_bytes:.3f}, "
          f"time ratio {jpeg_s / png_s:.2f}")  # fmt: skip


def faces(photo: Any, rounds: int) -> None:
    import dlib

    from rcmu_agent.faces import FaceDetector
    from rcmu_agent.settings import Settings

    array = np.asarray(photo)
    detector, bare = FaceDetector.from_settings(Settings()), dlib.get_frontal_face_detector()
    detector.detect(photo.resize((64, 64)))  # models loaded before either clock
    ours, theirs = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        rects, _, _ = bare.run(array, 1, 0.0)
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        found = detector.detect(photo)
        ours.append(time.perf_counter() - start)
    expected = sorted((r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects)
    got = sorted(r.box for r in found)
    same = len(expected) == len(got) and all(_iou(a, b) > 0.6 for a, b in zip(expected, got, strict=True))
    print(f"3. face detection, 12 MP: bare dlib HOG upsample 1 {min(theirs):.2f} s -> as configured (upsample "
          f"{detector.upsample_for(*photo.size)}) {min(ours):.2f} s; ratio {min(ours) / min(theirs):.3f} "
          f"(target <= 0.3); faces {len(got)} vs {len(expected)}, same: {same}")  # fmt: skip


def _iou(a: Any, b: Any) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def model_2b(photo: Any) -> None:
    """Vision + prefill of a random Qwen2-VL-2B; see the module docstring for what is extrapolated."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from rcmu_agent.settings import Settings

    config = Qwen2VLConfig(
        text_config={"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
                     "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "tie_word_embeddings": True},
        vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3},
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
    )  # fmt: skip
    start = time.perf_counter()
    model: Any = Qwen2VLForConditionalGeneration(config).eval()
    print(f"4. random Qwen2-VL-2B built in {time.perf_counter() - start:.0f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, fp32, CPU)")  # fmt: skip
    processor = Qwen2VLImageProcessorPil()
    s = Settings()
    for label, budget, whole in (
        ("budget", {"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels}, True),
        ("unbounded", {"shortest_edge": UNBOUNDED["min_pixels"], "longest_edge": UNBOUNDED["max_pixels"]}, False),
    ):
        vision = processor(images=[photo], size=budget, return_tensors="pt")
        grid, pixels = vision["image_grid_thw"], vision["pixel_values"]
        n_tokens = int(grid.prod()) // 4 + 60  # image tokens + a short context and question
        with torch.inference_mode():
            vision_s = _vision_seconds(model, pixels, grid, whole)
            prefill_s = _prefill_seconds(model, n_tokens, whole)
        how = "measured" if whole else "1 block/layer measured, scaled"
        print(f"   {label:9s}: {int(grid.prod()) // 4:6d} visual tokens, vision {vision_s:8.1f} s + prefill "
              f"{prefill_s:8.1f} s = {vision_s + prefill_s:8.1f} s ({how})")  # fmt: skip


def _vision_seconds(model: Any, pixels: Any, grid: Any, whole: bool) -> float:
    visual = model.model.visual
    if whole:
        start = time.perf_counter()
        visual(pixels, grid_thw=grid)
        return time.perf_counter() - start
    blocks = visual.blocks
    visual.blocks = blocks[:1]
    try:
        start = time.perf_counter()
        visual(pixels, grid_thw=grid)
        return (time.perf_counter() - start) * len(blocks)
    finally:
        visual.blocks = blocks


def _prefill_seconds(model: Any, n_tokens: int, whole: bool) -> float:
    import torch

    language = model.model.language_model
    embeds = torch.randn(1, n_tokens, language.config.hidden_size) * 0.02
    layers = language.layers
    if not whole:
        language.layers = layers[:1]
    try:
        start = time.perf_counter()
        language(inputs_embeds=embeds, use_cache=False)
        seconds = time.perf_counter() - start
    finally:
        language.layers = layers
    return seconds if whole else seconds * len(layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", action="store_true", help="also time a random Qwen2-VL-2B (minutes, ~10 GB)")
    args = parser.parse_args()
    photo = phone_photo()
    with tempfile.TemporaryDirectory() as tmp:
        photo.save(Path(tmp) / "phone.jpg", quality=92)  # a real 12 MP file, decoded back as the agent would
        from rcmu_agent.images import load_image

        photo = load_image(Path(tmp) / "phone.jpg")
    tokens()
    payload(photo)
    faces(photo, args.rounds)
    if args.model:
        model_2b(photo)


if __name__ == "__main__":
    main()
