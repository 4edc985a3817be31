"""A test kit for code built on rcmu-agent: tiny real models and a loopback OpenAI-compatible server.

The project's own tests use exactly these, and they suit anyone testing an integration without a
GPU, a model hub or a paid API:

- `build_tiny_qwen2vl(dir)` / `build_tiny_lora_adapter(base, dir)` save a 2-layer Qwen2-VL (and a LoRA
  adapter for it) the way a hub repository is laid out, so `Settings(model=str(dir))` loads it
  through the same code path as `weihongliang/RC-Qwen2VL-2b` (`tiny_models`).
- `build_tiny_owlv2(dir)`, `build_tiny_grounding_dino(dir)` and `build_tiny_clip(dir)` do the same
  for the object detectors and the image embedder (`tiny_vision`). Their weights are random: outputs
  have the right shapes and types, never meaningful content.
- `serve()` runs an OpenAI-compatible chat server on 127.0.0.1 (a free port) that answers from a
  script of `Reply`s — status, body, delay, streamed (SSE) chunks — and records every request it
  received (`Recorded`), so a test can check what the agent sent (`openai_server`). As its own
  process, for benchmarks: `python -m rcmu_agent.testing --delay 0.2`.

Example — an assistant on the OpenAI-compatible backend, answered by the loopback server::

    from rcmu_agent import Assistant, Settings
    from rcmu_agent.testing import FakeServer, Reply, serve

    with serve(FakeServer(default=Reply(text="Barack Obama [1] is on the left."))) as server:
        settings = Settings(
            home=tmp_path, backend="openai", base_url=server.url, model="rc-under-test", object_detector=None
        )
        answer = Assistant(settings).ask("Who is on the left?", "two_people.jpg")
        assert answer.text.startswith("Barack Obama")
        assert server.requests[0].body["model"] == "rc-under-test"  # what your code sent

Heavy libraries (torch, transformers, peft) are imported only when a builder runs.
"""

from __future__ import annotations

from rcmu_agent.testing.openai_server import FakeServer, Recorded, Reply, chunks, completion, serve
from rcmu_agent.testing.tiny_models import (
    QWEN2VL_SPECIAL_TOKENS,
    TINY_CHAT_TEMPLATE,
    build_tiny_lora_adapter,
    build_tiny_qwen2vl,
)
from rcmu_agent.testing.tiny_vision import TINY_WORDS, build_tiny_clip, build_tiny_grounding_dino, build_tiny_owlv2

__all__ = [
    "QWEN2VL_SPECIAL_TOKENS",
    "TINY_CHAT_TEMPLATE",
    "TINY_WORDS",
    "FakeServer",
    "Recorded",
    "Reply",
    "build_tiny_clip",
    "build_tiny_grounding_dino",
    "build_tiny_lora_adapter",
    "build_tiny_owlv2",
    "build_tiny_qwen2vl",
    "chunks",
    "completion",
    "serve",
]
