"""Time to the first streamed token against time to the whole answer, through the graph.

What a chat user waits for before anything shows: with streaming, the first token; without, the whole
answer. Both are measured in the same run, for each backend, through `graph.stream(...,
stream_mode="messages")` on two_people.jpg with a memory of two people:

1. the tiny Qwen2-VL (transformers, `TextIteratorStreamer`), `--tokens` new tokens;
2. the OpenAI-compatible backend against the loopback server in its own process, with a per-token delay
   (`--token-delay`) standing in for a model that decodes at that speed.

    python benchmarks/bench_streaming.py [--runs 5] [--tokens 64] [--token-delay 0.05]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENE = DATA / "faces" / "scenes" / "two_people.jpg"
REFERENCE = DATA / "faces" / "reference"
NO_OBJECTS: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}


def first_and_full(graph: Any, turn: dict[str, Any]) -> tuple[float, float, int]:
    """Seconds to the first answer token and to the end of the run, and how many chunks arrived."""
    start = time.perf_counter()
    first, chunks = 0.0, 0
    for message, meta in graph.stream(turn, stream_mode="messages"):
        if meta.get("langgraph_node") == "answer" and message.text:
            chunks += 1
            first = first or time.perf_counter() - start
    return first, time.perf_counter() - start, chunks


def report(name: str, graph: Any, turn: dict[str, Any], runs: int) -> None:
    first_and_full(graph, turn)  # warm-up: model loaded, photo decoded
    samples = [first_and_full(graph, turn) for _ in range(runs)]
    first = statistics.median(s[0] for s in samples)
    full = statistics.median(s[1] for s in samples)
    chunks = samples[-1][2]
    print(f"{name}: median of {runs} runs, {chunks} chunks")
    print(f"  time to first token    {first * 1000:9.1f} ms")
    print(f"  time to full answer    {full * 1000:9.1f} ms   (what a caller waits without streaming)")
    print(f"  ratio first / full     {first / full:9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens for the tiny model")
    parser.add_argument("--token-delay", type=float, default=0.05, help="loopback server: seconds per chunk")
    args = parser.parse_args()

    from rcmu_agent import Assistant, Settings
    from rcmu_agent.graph import build_graph
    from rcmu_agent.parts import Parts
    from rcmu_agent.testing import build_tiny_qwen2vl

    home = Path(tempfile.mkdtemp(prefix="rcmu-bench-"))
    teacher = Assistant(Settings(home=home, **NO_OBJECTS))
    teacher.remember("Barack Obama", info="44th president", photos=[REFERENCE / "obama_obama.jpg"])
    teacher.remember("Joe Biden", info="46th president", photos=[REFERENCE / "biden_biden.jpg"])
    image = {"type": "image", "base64": base64.b64encode(SCENE.read_bytes()).decode(), "mime_type": "image/jpeg"}
    turn = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Who is on the left?"}, image]}]}

    model = build_tiny_qwen2vl(home / "tiny-qwen")
    tiny = Settings(home=home, model=str(model), max_new_tokens=args.tokens, **NO_OBJECTS)
    report(f"tiny Qwen2-VL, transformers, {args.tokens} new tokens", build_graph(Parts(tiny)), turn, args.runs)

    words = " ".join(f"word{i}" for i in range(args.tokens - 1))
    server = subprocess.Popen(
        [sys.executable, "-m", "rcmu_agent.testing", "--token-delay", str(args.token_delay), "--text", words],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip() if server.stdout else ""
        remote = Settings(home=home, backend="openai", base_url=url, model="m", **NO_OBJECTS)
        name = f"OpenAI-compatible loopback server, {args.tokens} chunks at {args.token_delay * 1000:.0f} ms"
        report(name, build_graph(Parts(remote)), turn, args.runs)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
