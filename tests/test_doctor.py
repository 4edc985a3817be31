"""`rcmu doctor`: what this machine will do, for injected CPUs; the FLOP count behind its estimate,
checked against PyTorch's own FLOP counter over a real forward pass; and the command itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from rcmu_agent.cli import app
from rcmu_agent.cpu import read_cpu
from rcmu_agent.doctor import diagnose, render
from rcmu_agent.estimate import Dims, estimate_first_token, model_dims, qwen2vl_flops
from rcmu_agent.settings import Settings
from rcmu_agent.testing import build_tiny_qwen2vl
from rcmu_agent.visual_budget import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

ZEN3 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx fma avx2 bmi2\n"
SAPPHIRE_RAPIDS = "model name\t: Intel Xeon 8480+\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "dtype", "flag"), [(ZEN3, "float32", "no"), (SAPPHIRE_RAPIDS, "bfloat16", "amx_bf16")]
)
def test_the_report_says_what_this_cpu_will_do(tmp_path: Path, text: str, dtype: str, flag: str) -> None:
    cpu = read_cpu(text, arch="x86_64", cores=8)
    settings = Settings(home=tmp_path, model=str(tmp_path / "nowhere"), device="cpu", max_pixels=768 * 784)
    report = diagnose(settings, cpu=cpu, measure_seconds=0)
    lines = "\n".join(render(report))
    assert report.choice.name == dtype and f"dtype         {dtype}: {report.choice.reason}" in lines
    assert f"native bf16: {flag}" in lines and "8 cores" in lines
    assert "attention     sdpa" in lines
    assert "256..768 tokens per photo" in lines
    assert f"vision-language model: {tmp_path / 'nowhere'} (missing)" in lines
    assert "face models: dlib 5-point landmarks + ResNet descriptor (found)" in lines
    assert report.estimate is None and "estimate" not in lines  # no measuring asked for
    assert f"storage       everything: {tmp_path} (embedded: one machine)" in lines


@pytest.mark.unit
def test_the_estimate_is_flops_over_measured_speed() -> None:
    est = estimate_first_token(Dims(), 100.0, min_pixels=DEFAULT_MIN_PIXELS, max_pixels=DEFAULT_MAX_PIXELS)
    assert est.image_tokens == 1230  # a 4032x3024 photo under the default budget
    assert 9.5 < est.vision_tflop < 11 and 3.5 < est.prefill_tflop < 4.5  # Qwen2-VL-2B's shape
    halved = estimate_first_token(Dims(), 200.0, min_pixels=DEFAULT_MIN_PIXELS, max_pixels=DEFAULT_MAX_PIXELS)
    assert halved.vision_s == pytest.approx(est.vision_s / 2) and halved.prefill_s == pytest.approx(est.prefill_s / 2)
    smaller = estimate_first_token(Dims(), 100.0, min_pixels=DEFAULT_MIN_PIXELS, max_pixels=512 * 784)
    assert smaller.image_tokens <= 512 and smaller.first_token_s < est.first_token_s / 2


@pytest.mark.integration
def test_the_flop_count_matches_torchs_counter_on_a_real_forward(tmp_path: Path) -> None:
    """The analytic count against `FlopCounterMode` over the tiny Qwen2-VL's vision encoder and
    language model (eager attention, which the counter sees as plain matmuls; eager also computes
    the masked half of causal attention, which the analytic count leaves out)."""
    from transformers import Qwen2VLForConditionalGeneration

    tiny = build_tiny_qwen2vl(tmp_path / "tiny")
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny, attn_implementation="eager").eval()
    dims = model_dims(json.loads((tiny / "config.json").read_text()))
    grid = torch.tensor([[1, 16, 20]])  # 320 patches, 80 tokens
    patch = 3 * dims.temporal_patch * dims.patch**2
    pixels, text = torch.randn(320, patch), 30
    n = 80 + text
    with torch.inference_mode():
        with FlopCounterMode(display=False) as vision_counter:
            model.model.visual(pixels, grid_thw=grid)
        with FlopCounterMode(display=False) as prefill_counter:
            model.model.language_model(inputs_embeds=torch.randn(1, n, dims.hidden), use_cache=False)
    vision, prefill = qwen2vl_flops(dims, 80, text)
    masked_half = dims.layers * 2 * n * n * dims.hidden
    assert vision == pytest.approx(vision_counter.get_total_flops(), rel=0.01)
    assert prefill + masked_half == pytest.approx(prefill_counter.get_total_flops(), rel=0.01)


@pytest.mark.integration
def test_rcmu_doctor_prints_the_machine_and_an_estimate(tmp_path: Path) -> None:
    tiny = build_tiny_qwen2vl(tmp_path / "tiny")
    env = {"RCMU_HOME": str(tmp_path), "RCMU_MODEL": str(tiny), "RCMU_OBJECT_DETECTOR": "",
           "RCMU_IMAGE_EMBEDDING_MODEL": ""}  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "--seconds", "0.3"], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    wanted = ["device        cpu", "dtype         ", "attention     sdpa", "cpu flags", "visual budget", "GFLOPS in",
              f"vision-language model: {tiny} (found)", "object detector: off", "first token in"]  # fmt: skip
    for line in wanted:
        assert line in out, line
    assert "it/s" not in out and "%|" not in out  # no library progress bars
    shown = json.loads(runner.invoke(app, ["doctor", "--seconds", "0.2", "--json"], env=env).stdout)
    assert shown["device"] == "cpu" and shown["estimate"]["first_token_s"] > 0
    assert shown["models"][0] == {"role": "vision-language model", "id": str(tiny), "state": "found"}
    help_text = runner.invoke(app, ["doctor", "--help"]).output
    assert "time to the" in help_text and "--seconds SECONDS" in help_text and "--json" in help_text
    assert "doctor" in runner.invoke(app, ["--help"]).output


@pytest.mark.integration
def test_doctor_says_whether_the_shared_deployments_services_answer(
    tmp_path: Path, shared_services: dict[str, str]
) -> None:
    """A replica's first check: the PostgreSQL database and the Chroma server it is configured with,
    each tried now; a dead one is named with why, and a password is never printed."""
    env = {"RCMU_HOME": str(tmp_path), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": "", **shared_services}
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "--seconds", "0", "--json"], env=env)
    assert result.exit_code == 0, result.output
    storage = {row["what"]: row for row in json.loads(result.stdout)["storage"]}
    assert storage["photos, library, locks, threads"]["state"] == "reachable"
    assert storage["vectors"] == {"what": "vectors", "where": shared_services["RCMU_CHROMA_URL"], "state": "reachable"}

    dead = {
        **env,
        "RCMU_DATABASE_URL": "postgresql://rcmu:s3cret-pw@127.0.0.1:9/x",
        "RCMU_CHROMA_URL": "http://127.0.0.1:9",
    }
    out = runner.invoke(app, ["doctor", "--seconds", "0"], env=dead).output
    assert (
        "storage       photos, library, locks, threads: postgresql://rcmu:***@127.0.0.1:9/x (unreachable: cannot" in out
    )
    assert "storage       vectors: http://127.0.0.1:9 (unreachable: " in out and "s3cret" not in out
