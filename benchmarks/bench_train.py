"""Training throughput of `rcmu train` against a bare torch + peft loop, in one run.

Both train the same tiny Qwen2-VL with the same LoRA, optimizer, schedule and batches (same seeded
order, same `encode`, gradient accumulation 2), for the same number of steps. `rcmu train`'s figure
is the one its loop reports (the function the CLI calls), which includes its metrics, progress bar,
held-out-free logging and final checkpoint; the bare loop does nothing but step. Target: ratio >= 0.9.

    python benchmarks/bench_train.py [--steps 60] [--records 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PHOTOS = ["objects/chelsea.png", "objects/coffee.png", "objects/astronaut.png", "faces/scenes/two_people.jpg"]


def make_records(path: Path, count: int) -> None:
    from PIL import Image

    with path.open("w") as handle:
        for i in range(count):
            image = DATA / PHOTOS[i % len(PHOTOS)]
            width, height = Image.open(image).size
            region = {"box": [width * 0.1, height * 0.1, width * 0.6, height * 0.7], "category": "cat",
                      "info": f"Pet number {i} likes toy {i % 5}"}  # fmt: skip
            row = {"id": f"r{i}", "image": str(image), "image_size": [width, height], "regions": [region],
                   "kind": "V2C", "question": f"What does pet {i} like?", "answer": f"Toy {i % 5} [1].",
                   "citations": [1]}  # fmt: skip
            handle.write(json.dumps(row) + "\n")


def rcmu_train(model: Path, data: Path, out: Path, steps: int) -> float:
    from rcmu_agent.train.rcvit import TrainConfig, train

    config = TrainConfig(
        data=data, model=str(model), output_dir=out, lr=1e-3, global_batch=8, per_device_batch=4,
        max_steps=steps, log_every=10, save_every=steps, eval_fraction=0, cpu=True,
    )  # fmt: skip
    return train(config).samples_per_second


def bare_loop(model_dir: Path, data: Path, steps: int) -> float:
    """The minimum: peft model, AdamW, cosine schedule, forward/backward/step on the same batches."""
    import torch
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    from rcmu_agent.backends.hf import TransformersVLM
    from rcmu_agent.jsonl import BadLine
    from rcmu_agent.train._batches import DataStream, Encoder
    from rcmu_agent.train.rcvit import LORA_TARGETS, load_records

    set_seed(0)
    bad: list[BadLine] = []
    records = load_records(data, bad)
    vlm = TransformersVLM(str(model_dir), device="cpu")
    model = get_peft_model(vlm.model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=LORA_TARGETS))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=math.ceil(0.05 * steps), num_training_steps=steps)
    encoder, stream = Encoder(vlm, records), DataStream(len(records), 0)
    start = time.perf_counter()
    for _ in range(steps):
        indices = stream.take(8)
        for k in range(2):
            loss = model(**encoder.batch(indices[k * 4 : (k + 1) * 4])).loss
            (loss / 2).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return 8 * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from rcmu_agent.testing import build_tiny_qwen2vl

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_qwen2vl(root / "tiny")
        data = root / "data.jsonl"
        make_records(data, args.records)
        ours, bare = [], []
        for i in range(args.repeats):  # alternate, so drift in machine load hits both alike
            bare.append(bare_loop(model, data, args.steps))
            ours.append(rcmu_train(model, data, root / f"run{i}", args.steps))
        best_ours, best_bare = max(ours), max(bare)
        print(f"rcmu train : {best_ours:8.1f} samples/s  (runs: {', '.join(f'{v:.1f}' for v in ours)})")
        print(f"bare loop  : {best_bare:8.1f} samples/s  (runs: {', '.join(f'{v:.1f}' for v in bare)})")
        print(f"ratio      : {best_ours / best_bare:8.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
