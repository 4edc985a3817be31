"""`rcmu doctor`: what this machine will do with the in-process model, before anyone waits on it.

It prints the device, the dtype `auto` picks and why (`rcmu_agent.cpu`), the attention kernel, the
CPU's matmul-relevant flags, the visual token budget, which models are found locally, and an
estimate of the time to the first token for a 12 MP phone photo. The estimate is arithmetic, not a
run of the model: the model's floating-point operations for that photo (from its config, or the
2B model's shape when it is not downloaded) divided by the matmul speed measured here for a couple
of seconds, each stage at the fraction of that peak it reached in `benchmarks/bench_real_size.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rcmu_agent.cli_kit import Command, JsonOpt, run, settings, write
from rcmu_agent.cpu import CpuInfo, DtypeChoice, choose_dtype, matmul_gflops, read_cpu
from rcmu_agent.estimate import Estimate, estimate_first_token, model_dims
from rcmu_agent.visual_budget import FACTOR

if TYPE_CHECKING:
    from rcmu_agent.settings import Settings

__all__ = ["Report", "diagnose", "register", "render"]

# ---- what is on this machine ------------------------------------------------------------------------


def _local(model: str | None) -> tuple[str, Path | None]:
    """(`found`/`missing`/`off`, its config.json if any) for a model id or directory, never downloading."""
    if not model:
        return "off", None
    folder = Path(model).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        return "found", config if config.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - ships with transformers
        return "missing", None
    for name in ("config.json", "adapter_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            hit = try_to_load_from_cache(model, name)
        except ValueError:  # not a repo id
            return "missing", None
        if isinstance(hit, str):
            return "found", Path(hit) if name == "config.json" else None
    return "missing", None


def _dlib_state() -> str:
    from rcmu_agent.errors import ModelLoadError
    from rcmu_agent.faces import FACE_DESCRIPTOR_MODEL, model_file

    try:
        for name in ("shape_predictor_5_face_landmarks", FACE_DESCRIPTOR_MODEL):
            model_file(f"{name}.dat")
    except ModelLoadError:
        return "missing"
    return "found"


def _storage(settings: Settings) -> list[tuple[str, str, str]]:
    """(what, where, state) for each store: everything under the home (one machine), or the shared
    deployment's PostgreSQL and Chroma server, each tried once now (a replica's first check)."""
    if not settings.database_url and not settings.chroma_url:
        return [("everything", str(settings.home), "embedded: one machine")]
    from rcmu_agent.postgres import shown_url

    rows = []
    if settings.database_url:
        where = shown_url(settings.database_url)
        rows.append(("photos, library, locks, threads", where, _reach_postgres(settings.database_url)))
    else:
        rows.append(("photos, library, locks", str(settings.home), "this machine only (RCMU_DATABASE_URL unset)"))
    if settings.chroma_url:
        rows.append(("vectors", settings.chroma_url, _reach_chroma(settings.chroma_url)))
    else:
        rows.append(("vectors", str(settings.home / "chroma"), "this machine only (RCMU_CHROMA_URL unset)"))
    return rows


def _reach_postgres(url: str) -> str:
    from rcmu_agent.errors import RcmuError
    from rcmu_agent.postgres import connect

    try:
        connect(url).close()
    except RcmuError as exc:
        return f"unreachable: {exc.problem}"
    return "reachable"


def _reach_chroma(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v2/heartbeat", timeout=5) as response:
            return "reachable" if response.status == 200 else f"answered HTTP {response.status}"
    except (OSError, ValueError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"


@dataclass(frozen=True)
class Report:
    device: str
    choice: DtypeChoice
    cpu: CpuInfo
    threads: int
    models: list[tuple[str, str, str]]  # (role, id, found/missing/off)
    min_pixels: int
    max_pixels: int
    estimate: Estimate | None
    dims_from: str
    storage: list[tuple[str, str, str]]  # (what, where, state)


def diagnose(settings: Settings, *, cpu: CpuInfo | None = None, measure_seconds: float = 2.0) -> Report:
    """Everything `rcmu doctor` prints; `measure_seconds` of matmul in the chosen dtype (0: no estimate)."""
    import torch

    from rcmu_agent.backends.hf import pick_device

    cpu = cpu or read_cpu()
    device = pick_device(settings.device)
    choice = choose_dtype(settings.dtype, device, cpu=cpu if device == "cpu" else None)
    roles = [
        ("vision-language model", settings.model if settings.backend == "transformers" else None),
        ("processor", settings.processor_source() if settings.backend == "transformers" else None),
        ("LoRA adapter", settings.adapter),
        ("object detector", settings.object_detector),
        ("image embedding", settings.image_embedding_model),
    ]
    models, config = [], None
    for role, model in roles:
        state, found_config = _local(model)
        models.append((role, model or "", state))
        if role == "vision-language model" and found_config is not None:
            config = json.loads(found_config.read_text(encoding="utf-8"))
    models.append(("face models", "dlib 5-point landmarks + ResNet descriptor", _dlib_state()))
    estimate = None
    if measure_seconds > 0 and device == "cpu" and settings.backend == "transformers":
        peak = matmul_gflops(choice.name, seconds=measure_seconds)
        estimate = estimate_first_token(
            model_dims(config), peak, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
        )
    return Report(
        device=device,
        choice=choice,
        cpu=cpu,
        threads=torch.get_num_threads(),
        models=models,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        estimate=estimate,
        dims_from="the model's config.json" if config else "Qwen2-VL-2B's shape (model not found locally)",
        storage=_storage(settings),
    )


def render(report: Report) -> list[str]:
    """The report as lines of plain text."""
    from rcmu_agent.backends.hf import ATTENTION

    cpu = report.cpu
    tokens = report.max_pixels // (FACTOR * FACTOR)
    lines = [
        f"device        {report.device}",
        f"dtype         {report.choice.name}: {report.choice.reason}",
        f"attention     {ATTENTION} (PyTorch scaled_dot_product_attention, vision tower and language model)",
        f"cpu           {cpu.name} ({cpu.arch}, {cpu.cores} cores, torch uses {report.threads} threads)",
        f"cpu flags     {' '.join(cpu.shown_flags) or '(none of note)'}; native bf16: {cpu.native_bf16 or 'no'}",
        f"visual budget {report.min_pixels // (FACTOR * FACTOR)}..{tokens} tokens per photo "
        f"(RCMU_MIN_PIXELS={report.min_pixels}, RCMU_MAX_PIXELS={report.max_pixels})",
    ]
    for role, model, state in report.models:
        lines.append(f"model         {role}: {model} ({state})" if model else f"model         {role}: off")
    lines += [f"storage       {what}: {where} ({state})" for what, where, state in report.storage]
    est = report.estimate
    if est is not None:
        lines += [
            f"matmul        {est.peak_gflops:.0f} GFLOPS in {report.choice.name} (measured now)",
            f"estimate      12 MP photo -> {est.image_tokens} visual tokens: first token in about "
            f"{est.first_token_s:.0f} s (vision {est.vision_s:.0f} s for {est.vision_tflop:.1f} TFLOP, prefill "
            f"{est.prefill_s:.0f} s for {est.prefill_tflop:.1f} TFLOP, detection and resize "
            f"{est.outside_s:.1f} s; from {report.dims_from})",
        ]
    return lines


def register(app: typer.Typer) -> None:
    """Add `rcmu doctor` to the CLI (`rcmu_agent.cli` calls this once at import)."""

    @app.command(cls=Command)
    def doctor(
        seconds: Annotated[
            float,
            typer.Option(
                "--seconds", metavar="SECONDS", min=0, help="Matmul measuring time for the estimate; 0 skips it."
            ),
        ] = 2.0,
        as_json: JsonOpt = False,
    ) -> None:
        """Show what this machine will do: device, dtype and why, attention, CPU flags, visual budget,
        models found locally, where memory and threads are stored (and whether a shared deployment's
        PostgreSQL and Chroma server answer), and an estimate of the time to the first token for a 12 MP photo."""
        report = run(lambda: diagnose(settings(), measure_seconds=seconds))
        if as_json:
            est = report.estimate
            write(
                json.dumps(
                    {
                        "device": report.device,
                        "dtype": report.choice.name,
                        "dtype_reason": report.choice.reason,
                        "cpu": {"name": report.cpu.name, "arch": report.cpu.arch, "flags": report.cpu.shown_flags,
                                "native_bf16": report.cpu.native_bf16},
                        "models": [{"role": r, "id": m, "state": s} for r, m, s in report.models],
                        "visual_tokens": {"min": report.min_pixels // FACTOR**2, "max": report.max_pixels // FACTOR**2},
                        "storage": [{"what": w, "where": p, "state": s} for w, p, s in report.storage],
                        "estimate": None if est is None else {
                            "image_tokens": est.image_tokens, "matmul_gflops": round(est.peak_gflops, 1),
                            "first_token_s": round(est.first_token_s, 1), "vision_s": round(est.vision_s, 1),
                            "prefill_s": round(est.prefill_s, 1)},
                    },
                    indent=2,
                )
            )  # fmt: skip
            return
        for line in render(report):
            write(line)
