"""Checkpoints that resume a run exactly, written so that a kill at any moment loses nothing.

A checkpoint directory `checkpoint-<step>/` holds the LoRA adapter (peft format), the optimizer and
scheduler states, the step and data position (`trainer_state.json`) and every RNG the loop draws
from (one file per process). It is assembled under a temporary name and renamed into place in one
step, so a directory called `checkpoint-<step>` is always complete.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from rcmu_agent.errors import RcmuError
from rcmu_agent.files import atomic_write

__all__ = [
    "DiskFullError",
    "atomic_replace_dir",
    "disk_full",
    "latest_checkpoint",
    "load_rng",
    "load_state",
    "rng_state",
    "write_json",
]


class DiskFullError(RcmuError):
    """Writing an output failed for lack of space; everything written before it is intact."""


def disk_full(path: Path, exc: OSError, kept: str) -> DiskFullError:
    return DiskFullError(
        f"no space left on the device while writing {path} ({exc.strerror or exc}); {kept}",
        "free some space and run the same command again: it continues from what was kept",
    )


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step (temporary leftovers never match the pattern)."""
    if not output_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _CHECKPOINT.fullmatch(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def checkpoints(output_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _CHECKPOINT.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def prune(output_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints (0 keeps all)."""
    if keep > 0:
        for old in checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def clean_temporaries(output_dir: Path) -> None:
    """Remove half-written directories a killed save left behind."""
    if output_dir.is_dir():
        for p in output_dir.glob("*.tmp*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def atomic_replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place; an older one at `final` is swapped out, then removed."""
    old = final.with_name(final.name + ".tmp-old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str))


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + every CUDA device) generator states, as plain tensors/values."""
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng(state: dict[str, Any]) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: Path, rank: int, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore a checkpoint's optimizer, scheduler and this process's RNG; its `trainer_state.json`."""
    import torch

    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng_file = path / f"rng_state_{rank}.pt"
    if rng_file.exists():  # a run resumed on more processes than it was saved from starts their RNG afresh
        load_rng(torch.load(rng_file, weights_only=True))
    state: dict[str, Any] = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    return state
