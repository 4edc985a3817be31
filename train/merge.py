"""`rcmu merge`: fold a trained LoRA adapter into its base model, for servers that take plain weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.train import _checkpoint as ckpt

__all__ = ["merge"]


def merge(adapter: Path, out: Path, *, base: str | None = None, processor: str | None = None) -> Path:
    """Fold the adapter into its base model and save full weights + tokenizer + image processor.

    The result is a plain Qwen2-VL directory: vLLM can serve it and the agent loads it as `RCMU_MODEL`.
    Loading goes through the agent's own backend (which merges on load), so what is saved is exactly
    what the agent would have run.
    """
    import json

    from transformers import AutoImageProcessor, AutoTokenizer

    from rcmu_agent.backends.hf import TransformersVLM
    from rcmu_agent.errors import NotFoundError

    adapter, out = Path(adapter), Path(out)
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise NotFoundError(f"{adapter} is not a peft adapter (no adapter_config.json)", "give `output_dir/adapter`")
    base = base or json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise InvalidInputError(f"{config_file} does not name its base model", "pass --base MODEL")
    from rcmu_agent.settings import Settings

    settings = Settings(model=base, processor=processor)
    source = settings.processor_source()
    vlm = TransformersVLM(base, processor=source, adapter=str(adapter), device="cpu")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    vlm.model.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(tmp))
    # the budget travels with the model, so a server (vLLM) resizes as the agent does
    budget: dict[str, Any] = {"min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels}
    AutoImageProcessor.from_pretrained(source, **budget).save_pretrained(str(tmp))
    ckpt.atomic_replace_dir(tmp, out)
    return out
