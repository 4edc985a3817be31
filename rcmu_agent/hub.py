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

from rcmu_agent.errors import ModelLoadError, first_line

__all__ = ["hub_kwargs", "load_config", "load_vision_checkpoint"]


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


def load_config(model: str, *, what: str, fix: str, kinds: tuple[str, ...], kind_name: str, hub: dict[str, Any]) -> Any:
    """`model`'s config, checked to be one of `kinds` (`kind_name` in words); every failure (a missing
    directory, the hub, IO, an unsupported model type) is a `ModelLoadError` saying what to set."""
    if model.startswith((".", "~", "/")) and not Path(model).expanduser().is_dir():
        raise ModelLoadError(f"{what} directory {model!r} does not exist", fix)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model, **hub)
    except Exception as exc:  # hub, IO and config errors all mean the same thing to a user
        raise ModelLoadError(f"cannot load {what} {model!r}: {first_line(exc)}", fix) from exc
    if str(config.model_type) not in kinds:
        raise ModelLoadError(f"{model!r} is a {config.model_type!r} model, not {kind_name}", fix)
    return config


def load_vision_checkpoint(
    model_class: Any, model: str, device: str, *, what: str, fix: str, hub: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """(network in fp32 on `device`, tokenizer, image processor) of a text+image checkpoint.

    fp32 on every device: detector boxes are sensitive to half precision, and stored reference
    embeddings must not depend on where they were made."""
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        net: Any = model_class.from_pretrained(model, dtype=torch.float32, **hub)
        return (
            net.to(device).eval(),
            AutoTokenizer.from_pretrained(model, **hub),
            AutoImageProcessor.from_pretrained(model, **hub),
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load {what} {model!r}: {first_line(exc)}", fix) from exc
