"""Vision-language backends behind one small interface, chosen by `Settings.backend`.

- `transformers`: RC-Qwen2-VL (or any Qwen2-VL) loaded in-process, optionally with a LoRA adapter.
- `openai`: any OpenAI-compatible chat endpoint (vLLM serving RC-Qwen2-VL, or a hosted model).

Both receive exactly the same text block from `rcmu_agent.prompt`; only transport differs.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from rcmu_agent import model_cache
from rcmu_agent.backends.base import VisionLanguageModel

if TYPE_CHECKING:
    from rcmu_agent.backends.hf import TransformersVLM
    from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM
    from rcmu_agent.settings import Settings

__all__ = ["VisionLanguageModel", "load_backend"]


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
