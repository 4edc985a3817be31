"""`RCMU_DTYPE`: `auto` is bf16 where the CPU (or GPU) computes it natively, fp32 elsewhere; an explicit
name always wins; the model is loaded straight in the chosen dtype, with SDPA attention, adapters too.

The CPU is described by /proc/cpuinfo-style text, injected, so every case runs on any machine."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from rcmu_agent import cpu as cpu_module
from rcmu_agent.backends import load_backend
from rcmu_agent.backends.hf import ATTENTION, TransformersVLM, pick_dtype
from rcmu_agent.cpu import CpuInfo, choose_dtype, read_cpu
from rcmu_agent.settings import Settings
from rcmu_agent.testing import build_tiny_lora_adapter, build_tiny_qwen2vl

ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse sse2 avx fma avx2 bmi2 sha_ni vaes\n"
SKYLAKE = "model name\t: Intel Xeon Gold 6148\nflags\t\t: avx avx2 fma avx512f avx512bw avx512vl avx512_vnni\n"
COOPER_LAKE = "model name\t: Intel Xeon 8380H\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n"
SAPPHIRE_RAPIDS = "model name\t: Intel Xeon 8480+\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "model name\t: AMD Ryzen 7 7840U\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha2 crc32 sve i8mm bf16\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"


def cpu(text: str, arch: str = "x86_64") -> CpuInfo:
    return read_cpu(text, arch=arch, cores=2)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "arch", "expected", "flag"),
    [
        (ZEN3, "x86_64", "float32", None),
        (SKYLAKE, "x86_64", "float32", None),  # AVX-512 but no bf16 instructions: emulated
        (COOPER_LAKE, "x86_64", "bfloat16", "avx512_bf16"),
        (SAPPHIRE_RAPIDS, "x86_64", "bfloat16", "amx_bf16"),
        (ZEN4, "x86_64", "bfloat16", "avx512_bf16"),
        (GRAVITON3, "aarch64", "bfloat16", "bf16"),
        (GRAVITON2, "aarch64", "float32", None),
        ("", "x86_64", "float32", None),  # nothing readable: the safe choice
    ],
)
def test_auto_follows_the_cpu_flags(text: str, arch: str, expected: str, flag: str | None) -> None:
    info = cpu(text, arch)
    assert info.native_bf16 == flag
    choice = choose_dtype("auto", "cpu", cpu=info)
    assert choice.name == expected
    assert (flag or "no native bf16") in choice.reason  # says why, for -v and `rcmu doctor`


@pytest.mark.unit
@pytest.mark.parametrize("text", [ZEN3, SAPPHIRE_RAPIDS, GRAVITON3])
@pytest.mark.parametrize("asked", ["float32", "bfloat16", "float16"])
def test_an_explicit_dtype_always_wins(text: str, asked: str) -> None:
    choice = choose_dtype(asked, "cpu", cpu=cpu(text))
    assert choice.name == asked and choice.torch_dtype() == getattr(torch, asked)
    assert f"RCMU_DTYPE={asked}" in choice.reason


@pytest.mark.unit
def test_gpus_and_mps_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    native = cpu(SAPPHIRE_RAPIDS)
    assert choose_dtype("auto", "cuda", cpu=native, cuda_bf16=True).name == "bfloat16"
    assert choose_dtype("auto", "cuda:1", cpu=native, cuda_bf16=False).name == "float32"
    assert choose_dtype("auto", "mps", cpu=native).name == "float32"
    assert pick_dtype("float16", "cuda") == torch.float16
    monkeypatch.setenv("RCMU_DTYPE", "bfloat16")
    assert Settings().dtype == "bfloat16"
    with pytest.raises(ValidationError):
        Settings(dtype="float64")  # type: ignore[arg-type]


@pytest.mark.unit
def test_flags_are_read_from_cpuinfo_text() -> None:
    info = cpu(SAPPHIRE_RAPIDS)
    assert info.name == "Intel Xeon 8480+"
    assert info.shown_flags == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    assert cpu(GRAVITON3, "aarch64").shown_flags == ["asimd", "sve", "i8mm", "bf16"]
    here = read_cpu()  # this machine's own /proc/cpuinfo parses too
    assert here.cores >= 1 and isinstance(here.flags, frozenset)


def _as_if(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """`choose_dtype` then sees `text` as this machine's CPU."""
    monkeypatch.setattr(cpu_module, "read_cpu", lambda *a, **k: read_cpu(text, arch="x86_64", cores=2))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("qwen") / "tiny")


@pytest.fixture(scope="module")
def adapter(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lora_adapter(tiny, tmp_path_factory.mktemp("lora") / "adapter")


def _dtypes(vlm: TransformersVLM) -> set[torch.dtype]:
    return {p.dtype for p in vlm.model.parameters()}


@pytest.mark.integration
@pytest.mark.parametrize(("text", "expected"), [(SAPPHIRE_RAPIDS, torch.bfloat16), (ZEN3, torch.float32)])
def test_auto_loads_the_tiny_model_in_the_cpus_dtype_and_logs_why(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, text: str,
    expected: torch.dtype,
) -> None:  # fmt: skip
    _as_if(monkeypatch, text)
    vlm = TransformersVLM(str(tiny), device="cpu", max_new_tokens=4)
    with caplog.at_level(logging.INFO, logger="rcmu_agent.backends.hf"):
        vlm.load()
    assert _dtypes(vlm) == {expected}
    assert vlm.dtype_choice is not None and vlm.dtype_choice.torch_dtype() == expected
    logged = caplog.text
    assert str(expected).removeprefix("torch.") in logged and vlm.dtype_choice.reason in logged
    # SDPA for both halves of the model
    assert vlm.model.config._attn_implementation == ATTENTION == "sdpa"
    assert vlm.model.model.visual.config._attn_implementation == "sdpa"
    assert isinstance(vlm.generate("Who is on the left?"), str)


@pytest.mark.integration
def test_an_explicit_dtype_wins_over_the_cpu_at_load(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_if(monkeypatch, SAPPHIRE_RAPIDS)
    settings = Settings(home=tmp_path, model=str(tiny), device="cpu", dtype="float32", max_new_tokens=4)
    vlm = load_backend(settings)
    assert isinstance(vlm, TransformersVLM) and _dtypes(vlm) == {torch.float32}
    _as_if(monkeypatch, ZEN3)
    bf16 = load_backend(settings.model_copy(update={"dtype": "bfloat16"}))
    assert isinstance(bf16, TransformersVLM) and bf16 is not vlm and _dtypes(bf16) == {torch.bfloat16}
    assert isinstance(bf16.generate("Who is on the left?"), str)


@pytest.mark.integration
def test_a_lora_adapter_loads_in_either_dtype(tiny: Path, adapter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Merged into bf16 or fp32 weights alike; the merge changes the weights the same way in both."""
    merged = {}
    for text, dtype in ((SAPPHIRE_RAPIDS, torch.bfloat16), (ZEN3, torch.float32)):
        _as_if(monkeypatch, text)
        vlm = TransformersVLM(str(tiny), adapter=str(adapter), device="cpu", max_new_tokens=4)
        assert _dtypes(vlm) == {dtype}
        assert not any("lora" in name for name, _ in vlm.model.named_parameters())  # merged, not wrapped
        assert isinstance(vlm.generate("Who is on the left?"), str)
        merged[dtype] = vlm.model.model.language_model.layers[0].self_attn.q_proj.weight.float()
    base = TransformersVLM(str(tiny), device="cpu", dtype="float32").model
    original = base.model.language_model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(merged[torch.float32], original)  # the adapter did change the weights
    torch.testing.assert_close(merged[torch.bfloat16], merged[torch.float32], atol=0.02, rtol=0.02)
