"""Evaluation throughput through the agent graph: concurrency 8 against concurrency 1, same run.

The model under test is the `openai` backend pointed at a loopback OpenAI-compatible server that takes
200 ms per request (a served model's latency). The questions are RC&P-Bench multiple choice in the
oracle setting (gold regions with info, so detection is skipped and the model call dominates), built
from the shipped sample with shuffled options. Target: ratio >= 6x.

    python benchmarks/bench_eval.py [--items 48] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def build_questions(folder: Path, n: int) -> Path:
    from rcmu_agent.evals._shuffle import reshuffled_rcpbench

    samples = Path(__file__).resolve().parents[1] / "evals" / "samples" / "rcpbench"
    return reshuffled_rcpbench(samples, folder, n)


def run_once(data: Path, url: str, concurrency: int, root: Path) -> float:
    from rcmu_agent import Assistant, Settings
    from rcmu_agent.evals.judges import Judges
    from rcmu_agent.evals.runner import EvalConfig, Runner

    settings = Settings(
        home=root / f"home-{concurrency}",
        backend="openai",
        model="rc-bench",
        base_url=url,
        object_detector=None,
        image_embedding_model=None,
        max_retries=0,
    )
    config = EvalConfig(
        "rcpbench", data, root / f"out-{concurrency}", concurrency=concurrency, rcp_settings=("oracle",), progress=False
    )
    start = time.perf_counter()
    summary = Runner(Assistant(settings), Judges(None), config).run_sync()
    elapsed = time.perf_counter() - start
    assert summary["answered"] == summary["items"], summary
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rcmu-bench-eval-"))
    data = build_questions(root / "data", args.items)
    # The server runs as its own process, as vLLM would: in-process, its JSON parsing would share our GIL.
    server = subprocess.Popen(
        [sys.executable, "-m", "rcmu_agent.testing", "--delay", str(args.delay), "--text", "A"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        run_once(build_questions(root / "warm", 2), url, 1, root / "warm")  # imports, Chroma, first sockets
        serial = run_once(data, url, 1, root)
        parallel = run_once(data, url, 8, root)
    finally:
        server.terminate()
        server.wait(timeout=10)
    n = args.items
    print(f"{n} items, server latency {args.delay * 1000:.0f} ms per request")
    print(f"concurrency 1: {serial:6.2f} s  {n / serial:6.2f} items/s")
    print(f"concurrency 8: {parallel:6.2f} s  {n / parallel:6.2f} items/s")
    print(f"ratio (8 vs 1): {serial / parallel:.2f}x (target >= 6x)")


if __name__ == "__main__":
    main()
