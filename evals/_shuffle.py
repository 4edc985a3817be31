"""A larger RC&P-Bench set drawn from a small one, with each question's options reshuffled.

The shipped sample has a handful of questions: too few for a chance-level bound or a throughput figure
to mean anything. Reshuffling the options places the gold letter uniformly, so a guesser's expected
accuracy is exactly 1 / options.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rcmu_agent.evals.datasets import load_rcpbench

__all__ = ["reshuffled_rcpbench"]


def reshuffled_rcpbench(source: Path, folder: Path, n: int, *, seed: int = 0, prefix: str = "q") -> Path:
    """Write `n` questions cycled from the RC&P-Bench at `source` (options shuffled) plus its gallery to `folder`."""
    bench = load_rcpbench(source)
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    gallery = [
        {**e.model_dump(exclude={"photo_paths"}), "photos": [str(p) for p in e.photo_paths]}
        for e in bench.gallery.values()
    ]
    (folder / "gallery.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gallery))
    rows = []
    for i in range(n):
        q = bench.questions[i % len(bench.questions)]
        texts = list(q.options.values())
        rng.shuffle(texts)
        options = {chr(65 + j): t for j, t in enumerate(texts)}
        gold = next(letter for letter, t in options.items() if t == q.options[q.answer])
        row = {**q.model_dump(exclude={"image_path"}), "id": f"{prefix}{i:04d}", "options": options, "answer": gold}
        row["image"] = str(q.image_path)
        rows.append(json.dumps(row))
    (folder / "questions.jsonl").write_text("\n".join(rows) + "\n")
    return folder
