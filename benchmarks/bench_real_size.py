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
import functools
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
print = functools.partial(print, flush=True)  # each line as it is measured

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


def model_2b(photo_path: Path, model: str, dtypes: list[str], budgets: list[int], tokens: int) -> None:
    """A random real-size Qwen2-VL-2B (`_bench_2b`), one worker process per (dtype, budget)."""
    from rcmu_agent.cpu import choose_dtype, matmul_gflops, read_cpu

    cpu = read_cpu()
    peaks = {d: matmul_gflops(d, seconds=3.0) for d in ("float32", "bfloat16")}
    print(f"4. CPU: {cpu.name}, {cpu.cores} cores, native bf16: {cpu.native_bf16 or 'no'}; matmul 1300x1536x8960 "
          f"peak: fp32 {peaks['float32']:.1f} GFLOPS, bf16 {peaks['bfloat16']:.1f} GFLOPS")  # fmt: skip
    folder = Path(model) if model else Path.home() / ".cache" / "rcmu-bench" / "qwen2vl-2b-random"
    if not (folder / "config.json").is_file():
        start = time.perf_counter()
        _run({"build": str(folder)})
        print(f"   random Qwen2-VL-2B saved to {folder} in {time.perf_counter() - start:.0f} s (bf16 safetensors)")
    auto = choose_dtype("auto", "cpu", cpu=cpu)
    print(f"   RCMU_DTYPE=auto -> {auto.name}: {auto.reason}")
    runs: list[dict[str, Any]] = []
    for dtype in dict.fromkeys(auto.name if d == "auto" else d for d in dtypes):
        for i, budget in enumerate(budgets):
            args = {"model": str(folder), "dtype": dtype, "budget": budget, "photo_path": str(photo_path),
                    "attention": dtype == "float32" and i == 0, "tokens": tokens}  # fmt: skip
            result = _run(args)
            result["matmul_peak"] = peaks[dtype]
            runs.append(result)
            _print_run(result, auto.name)
    _print_table(runs, auto.name)


def _run(args: dict[str, Any]) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    worker = Path(__file__).with_name("_bench_2b.py")
    done = subprocess.run([sys.executable, str(worker), json.dumps(args)], capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"worker {args} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def _print_run(r: dict[str, Any], auto: str) -> None:
    name = f"{r['dtype']}{' (auto)' if r['dtype'] == auto else ''}, budget {r['budget']}"
    bare, peak = r["bare"], r["matmul_peak"]
    vision_g, prefill_g = r["vision_tflop"] * 1e3 / bare["vision_s"], r["prefill_tflop"] * 1e3 / bare["prefill_s"]
    if r.get("scaled"):
        print(f"   {name}: {r['image_tokens']} visual tokens; 1 vision block and 1 decoder layer timed, scaled: "
              f"vision {bare['vision_s']:.0f} s + prefill {bare['prefill_s']:.0f} s = "
              f"{bare['first_token_s']:.0f} s; {vision_g:.1f} / {prefill_g:.1f} GFLOPS against a {peak:.1f} peak; "
              f"peak RSS {r['peak_rss_gb']:.1f} GB")  # fmt: skip
        return
    ours, stages = r["project_first_token_s"], r["project"]
    print(f"   {name}: {r['image_tokens']} visual tokens, {r['prompt_tokens']} prompt tokens; model loaded in "
          f"{r['load_s']:.0f} s ({r['rss_after_load_gb']:.1f} GB RSS)")  # fmt: skip
    print(f"     bare transformers: resize {bare['resize_s']:.2f} s + vision {bare['vision_s']:.1f} s + prefill "
          f"{bare['prefill_s']:.1f} s = {bare['first_token_s']:.1f} s; vision {vision_g:.1f} GFLOPS "
          f"({vision_g / peak:.0%} of peak), prefill {prefill_g:.1f} GFLOPS ({prefill_g / peak:.0%})")  # fmt: skip
    parts = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    print(f"     rcmu-agent: first token {ours:.1f} s ({parts}); ratio to bare {ours / bare['first_token_s']:.3f} "
          f"(target <= 1.15); peak RSS {r['peak_rss_gb']:.1f} GB (target <= 7)")  # fmt: skip
    if "attention" in r:
        att = r["attention"]
        print(f"     attention, 1 vision block + 1 layer scaled, 2 rounds: eager {min(att['eager']):.1f} s, "
              f"sdpa {min(att['sdpa']):.1f} s")  # fmt: skip


def _print_table(runs: list[dict[str, Any]], auto: str) -> None:
    print("\n| dtype | budget | visual tokens | first token, rcmu-agent | bare transformers | ratio | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        bare = r["bare"]["first_token_s"]
        ours = r.get("project_first_token_s")
        label = r["dtype"] + (" (auto)" if r["dtype"] == auto else "")
        if ours is None:
            print(f"| {label} | {r['budget']} | {r['image_tokens']} | | {bare:.0f} s (scaled) | | "
                  f"{r['peak_rss_gb']:.1f} GB |")  # fmt: skip
        else:
            print(f"| {label} | {r['budget']} | {r['image_tokens']} | {ours:.1f} s | {bare:.1f} s | "
                  f"{ours / bare:.3f}x | {r['peak_rss_gb']:.1f} GB |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--model", nargs="?", const="", default=None, metavar="DIR",
        help="also time a random Qwen2-VL-2B (DIR, or built once into ~/.cache/rcmu-bench; tens of minutes, ~10 GB)",
    )  # fmt: skip
    parser.add_argument("--dtypes", default="auto,float32,bfloat16", help="comma-separated; auto resolved here")
    parser.add_argument("--budgets", default="1280,768,512", help="visual token budgets (RCMU_MAX_PIXELS / 784)")
    parser.add_argument("--tokens", type=int, default=8, help="tokens generated per answer")
    parser.add_argument("--skip-faces", action="store_true", help="only the model part")
    args = parser.parse_args()
    photo = phone_photo()
    with tempfile.TemporaryDirectory() as tmp:
        photo.save(Path(tmp) / "phone.jpg", quality=92)  # a real 12 MP file, decoded back as the agent would
        from rcmu_agent.images import load_image

        photo = load_image(Path(tmp) / "phone.jpg")
        if not args.skip_faces:
            tokens()
            payload(photo)
            faces(photo, args.rounds)
        if args.model is not None:
            model_2b(
                Path(tmp) / "phone.jpg", args.model, args.dtypes.split(","),
                [int(b) for b in args.budgets.split(",")], args.tokens,
            )  # fmt: skip


if __name__ == "__main__":
    main()
