"""Vision-language backends behind one small interface, chosen by `Settings.backend`.

- `transformers`: RC-Qwen2-VL (or any Qwen2-VL) loaded in-process, optionally with a LoRA adapter.
- `openai`: any OpenAI-compatible chat endpoint (vLLM serving RC-Qwen2-VL, or a hosted model).

Both receive exactly the same text block from `rcmu_agent.prompt`; only transport differs.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rcmu_agent.backends.base import VisionLanguageModel

if TYPE_CHECKING:
    from rcmu_agent.settings import Settings

__all__ = ["VisionLanguageModel", "load_backend"]


_cache: dict[tuple[object, ...], VisionLanguageModel] = {}
_cache_lock = threading.Lock()


def load_backend(settings: Settings) -> VisionLanguageModel:
    """The backend the settings describe; built once per process and reused."""
    budget = (settings.min_pixels, settings.max_pixels)
    if settings.backend == "openai":
        key: tuple[object, ...] = ("openai", settings.model, settings.base_url, settings.request_timeout, budget)
    else:
        key = ("transformers", settings.model, settings.processor_source(), settings.adapter, settings.device, budget)
        key += (settings.dtype,)
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            backend = _build(settings)
            _cache[key] = backend
        return backend


def _build(settings: Settings) -> VisionLanguageModel:
    if settings.backend == "openai":
        from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM

        return OpenAICompatibleVLM.from_settings(settings)
    from rcmu_agent.backends.hf import TransformersVLM

    return TransformersVLM.from_settings(settings)
