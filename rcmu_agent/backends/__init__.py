"""Vision-language backends behind one small interface, chosen by `Settings.backend`.

- `transformers`: RC-Qwen2-VL (or any Qwen2-VL) loaded in-process, optionally with a LoRA adapter.
- `openai`: any OpenAI-compatible chat endpoint (vLLM serving RC-Qwen2-VL, or a hosted model).

Both receive exactly the same text block from `rcmu_agent.prompt`; only transport differs.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Hashable, Iterator
from typing import TYPE_CHECKING

from rcmu_agent import model_cache

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.backends.hf import TransformersVLM
    from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM
    from rcmu_agent.settings import Settings

__all__ = ["VisionLanguageModel", "load_backend"]


class VisionLanguageModel(ABC):
    """Answer one user turn: an optional image, then one text block. Greedy, no system message."""

    name: str = "vlm"

    @abstractmethod
    def generate(self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None) -> str:
        """The model's reply, special tokens removed."""

    async def agenerate(self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None) -> str:
        """Async variant; backends with a native async client override it."""
        return await asyncio.to_thread(self.generate, text, image, max_new_tokens=max_new_tokens)

    def stream(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> Iterator[str]:
        """The reply in pieces as they are decoded; joined, they are `generate`'s reply.

        The default yields the whole reply at once, for backends that cannot stream.
        """
        yield self.generate(text, image, max_new_tokens=max_new_tokens)

    async def astream(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> AsyncIterator[str]:
        """Async `stream`: each piece is pulled in a worker thread, so the event loop never waits on
        the model (a LangGraph server keeps serving other runs meanwhile)."""
        pieces = self.stream(text, image, max_new_tokens=max_new_tokens)
        done = object()
        try:
            while (piece := await asyncio.to_thread(next, pieces, done)) is not done:
                yield str(piece)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                await asyncio.to_thread(close)


def load_backend(settings: Settings) -> VisionLanguageModel:
    """The backend the settings describe; built once per process (`rcmu_agent.model_cache`) and reused."""
    budget = (settings.min_pixels, settings.max_pixels)
    kind: type[OpenAICompatibleVLM] | type[TransformersVLM]
    if settings.backend == "openai":
        from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM as kind

        options: tuple[Hashable, ...] = (settings.base_url, settings.request_timeout, budget)
    else:
        from rcmu_agent.backends.hf import TransformersVLM as kind

        options = (settings.processor_source(), settings.adapter, settings.device, budget, settings.dtype)
    return model_cache.get_or_load(kind, settings.model, options, lambda: kind.from_settings(settings))
