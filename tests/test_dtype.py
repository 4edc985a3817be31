"""`RCMU_DTYPE`: fp32 on CPU by default, bf16 on request (half the memory), applied at load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from rcmu_agent.backends import load_backend
from rcmu_agent.backends.hf import TransformersVLM, pick_dtype
from rcmu_agent.settings import Settings
from rcmu_agent.testing import build_tiny_qwen2vl

pytestmark = pytest.mark.integration  # a tiny VLM


def test_auto_is_fp32_on_cpu_and_names_are_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16
    assert pick_dtype("float16", "cuda") == torch.float16
    monkeypatch.setenv("RCMU_DTYPE", "bfloat16")
    assert Settings().dtype == "bfloat16"
    with pytest.raises(ValidationError):
        Settings(dtype="float64")  # type: ignore[arg-type]


def test_bf16_model_loads_in_bf16_and_answers(tmp_path: Path) -> None:
    tiny = build_tiny_qwen2vl(tmp_path / "qwen")
    settings = Settings(home=tmp_path, model=str(tiny), device="cpu", dtype="bfloat16", max_new_tokens=4)
    vlm = load_backend(settings)
    assert isinstance(vlm, TransformersVLM)
    assert {p.dtype for p in vlm.model.parameters()} == {torch.bfloat16}
    assert isinstance(vlm.generate("Who is on the left?"), str)
    fp32 = load_backend(settings.model_copy(update={"dtype": "auto"}))
    assert fp32 is not vlm and {p.dtype for p in fp32.model.parameters()} == {torch.float32}  # type: ignore[attr-defined]
