"""What this machine's CPU can compute fast, and so which dtype `RCMU_DTYPE=auto` loads the model in.

bf16 halves the weights' memory, but only a CPU with bf16 instructions computes it fast: on x86 the
`avx512_bf16` or `amx_bf16` flags (Cooper Lake, Sapphire Rapids and later Xeons, AMD Zen 4 and later),
on arm64 the `bf16` feature (Graviton 3, Apple M2 and later). Without them PyTorch converts every
element in software and a bf16 matmul runs 7-100x slower than fp32 (measured on a Zen 3 EPYC: 6.5
against 48 GFLOPS), so `auto` then keeps fp32. The decision reads the CPU's own flags — never the
model name, never a guess — and carries its reason, which `-v` logs and `rcmu doctor` prints.

Everything here takes the flags as text, so tests inject the capability strings of any CPU.
"""

from __future__ import annotations

import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "BF16_FLAGS",
    "CpuInfo",
    "DtypeChoice",
    "choose_dtype",
    "matmul_gflops",
    "read_cpu",
]

# A CPU flag (as Linux names it in /proc/cpuinfo) that means bf16 matmuls run in hardware.
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
# Flags worth showing a user: vector widths and matrix units that decide CPU matmul speed.
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
SHOWN_FEATURES = ("asimd", "sve", "sve2", "i8mm", "bf16")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the dtype choice sees it: architecture, a name for people, and its feature flags."""

    arch: str  # platform.machine(): x86_64, aarch64, arm64
    name: str
    flags: frozenset[str]
    cores: int

    @property
    def native_bf16(self) -> str | None:
        """The flag proving native bf16 (e.g. `avx512_bf16`), or None when bf16 would be emulated."""
        return next((f for f in BF16_FLAGS if f in self.flags), None)

    @property
    def shown_flags(self) -> list[str]:
        """The flags that matter for matmul speed, as `rcmu doctor` lists them."""
        wanted = SHOWN_FEATURES if self.arch in ("aarch64", "arm64") else SHOWN_FLAGS
        return [f for f in wanted if f in self.flags]


def read_cpu(cpuinfo: str | None = None, *, arch: str | None = None, cores: int | None = None) -> CpuInfo:
    """This CPU (or the one `cpuinfo`, text in /proc/cpuinfo's format, describes).

    Linux lists x86 flags on `flags` lines and arm64 features on `Features` lines; macOS has no
    /proc/cpuinfo, so there the bf16 feature comes from `sysctl hw.optional.arm.FEAT_BF16`.
    """
    import os

    arch = arch or platform.machine()
    cores = cores or os.cpu_count() or 1
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.exists() else _darwin_cpuinfo()
    flags: set[str] = set()
    name = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags.update(value.split())
        elif key in ("model name", "cpu model", "hardware") and not name:
            name = value.strip()
    return CpuInfo(arch=arch, name=name or platform.processor() or arch, flags=frozenset(flags), cores=cores)


def _darwin_cpuinfo() -> str:
    """/proc/cpuinfo's shape for macOS: the brand string and `bf16` when the chip has FEAT_BF16."""
    if platform.system() != "Darwin":
        return ""

    def sysctl(name: str) -> str:
        try:
            done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
        except OSError:
            return ""
        return done.stdout.strip()

    features = "bf16" if sysctl("hw.optional.arm.FEAT_BF16") == "1" else ""
    return f"model name: {sysctl('machdep.cpu.brand_string')}\nFeatures: asimd {features}\n"


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype the model is loaded in (a torch attribute name) and, in words, why."""

    name: str  # float32 | bfloat16 | float16
    reason: str

    def torch_dtype(self) -> torch.dtype:
        import torch

        chosen: torch.dtype = getattr(torch, self.name)
        return chosen


def choose_dtype(
    requested: str, device: str, *, cpu: CpuInfo | None = None, cuda_bf16: bool | None = None
) -> DtypeChoice:
    """`requested` as given unless it is `auto`; then bf16 on a GPU or CPU that computes it natively,
    fp32 elsewhere (MPS included, as before). `cpu` and `cuda_bf16` default to this machine's."""
    if requested != "auto":
        return DtypeChoice(requested, f"RCMU_DTYPE={requested} was asked for")
    if device.startswith("cuda"):
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if cuda_bf16:
            return DtypeChoice("bfloat16", "the GPU supports bf16: half the memory, same speed or better")
        return DtypeChoice("float32", "the GPU has no bf16 support")
    if device != "cpu":
        return DtypeChoice("float32", f"{device} runs bf16 matmuls slowly or not at all")
    cpu = cpu or read_cpu()
    flag = cpu.native_bf16
    if flag:
        return DtypeChoice("bfloat16", f"the CPU computes bf16 natively ({flag}): half the memory, faster matmuls")
    wanted = "bf16" if cpu.arch in ("aarch64", "arm64") else "avx512_bf16 or amx_bf16"
    return DtypeChoice(
        "float32", f"the CPU has no native bf16 ({wanted} missing): bf16 would be emulated, many times slower"
    )


def matmul_gflops(
    dtype: str = "float32", *, seconds: float = 2.0, shape: tuple[int, int, int] = (1300, 1536, 8960)
) -> float:
    """Achieved GFLOPS of repeated `x @ w.T` (a prefill-sized MLP projection by default), best of the
    calls made within `seconds`: the machine's practical matmul peak in `dtype`, with every thread
    torch would use for the model."""
    import torch

    m, k, n = shape
    kind = getattr(torch, dtype)
    x, w = torch.randn(m, k).to(kind), torch.randn(n, k).to(kind)
    best = float("inf")
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)  # first call: kernels chosen, memory touched
        deadline = time.perf_counter() + seconds
        while True:
            start = time.perf_counter()
            torch.nn.functional.linear(x, w)
            best = min(best, time.perf_counter() - start)
            if start + best >= deadline:
                break
    return 2 * m * k * n / best / 1e9
