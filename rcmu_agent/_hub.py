"""Fail fast when a model must come from the hub and the hub cannot be reached.

huggingface_hub retries a dead connection with backoff for about a minute per file; a user without
network should instead learn at once what to set. Cached and local models load offline.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rcmu_agent.errors import ModelLoadError

__all__ = ["hub_kwargs"]


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _cached(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    for name in ("config.json", "adapter_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            if isinstance(try_to_load_from_cache(model_id, name), str):
                return True
        except ValueError:  # not a valid repo id: let from_pretrained produce its own error
            return False
    return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_kwargs(model_id: str, *, what: str, fix: str) -> dict[str, Any]:
    """`from_pretrained` keyword arguments for `model_id`, or a ModelLoadError if it cannot load."""
    if Path(model_id).expanduser().is_dir():
        return {}
    if _offline() or _cached(model_id):
        return {"local_files_only": _offline() or not _hub_reachable()}
    if not _hub_reachable():
        raise ModelLoadError(f"cannot download {what} {model_id!r}: the model hub is unreachable from here", fix)
    return {}
