"""Each benchmark's sample, end to end through the graph with a tiny Qwen2-VL (transformers backend,
loaded from disk like a hub id), a tiny CLIP for CLIPScore and the loopback judge; plus the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _helpers import hashed_letter_responder

from rcmu_agent import Assistant, Settings
from rcmu_agent.evals.judges import ClipScorer, Judges, LLMEntailment
from rcmu_agent.evals.report import metric_rows
from rcmu_agent.evals.runner import EvalConfig, Runner, read_records
from rcmu_agent.llm import LLM
from rcmu_agent.testing import FakeServer, build_tiny_clip, build_tiny_qwen2vl, serve

pytestmark = pytest.mark.integration  # a tiny VLM and CLIP, loopback servers

RCMU = "rcmu/test.jsonl"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"qwen": build_tiny_qwen2vl(root / "qwen"), "clip": build_tiny_clip(root / "clip")}


def tiny_run(
    tiny: dict[str, Path], judge_url: str, benchmark: str, data: Path, out: Path, **config: Any
) -> dict[str, Any]:
    settings = Settings(
        home=out.parent / f"{out.name}-home",
        backend="transformers",
        model=str(tiny["qwen"]),
        max_new_tokens=12,
        object_detector=None,
        image_embedding_model=None,
    )
    llm = LLM.from_settings(settings, model="judge", base_url=judge_url, cache=out.parent / "judge.sqlite")
    judges = Judges(llm, LLMEntailment(llm), ClipScorer(str(tiny["clip"]), device="cpu"))
    return Runner(
        Assistant(settings), judges, EvalConfig(benchmark, data, out, concurrency=2, progress=False, **config)
    ).run_sync()


def _in_bounds(summary: dict[str, Any]) -> None:
    rows = metric_rows(summary)
    assert rows and any(v is not None for _, v in rows)
    for label, value in rows:
        if value is not None:
            upper = 250.0 if label == "CLIPScore" else 100.0  # CLIPScore is 2.5·cos, uncapped
            assert 0.0 <= value <= upper, (label, value)


@pytest.mark.parametrize("which", ["rcmu", "rcpbench", "yollava"])
def test_sample_runs_through_the_graph_with_tiny_qwen(
    which: str, tiny: dict[str, Path], samples: Path, judge_server: FakeServer, tmp_path: Path
) -> None:
    data = samples / (RCMU if which == "rcmu" else which)
    summary = tiny_run(tiny, judge_server.url, which, data, tmp_path / "out")
    for name in ("items.jsonl", "summary.json", "summary.md", "plot.png", "run.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert summary["prediction_errors"] == 0 and summary["judge_failures"] == {}
    _in_bounds(summary)
    records = read_records(tmp_path / "out" / "items.jsonl")
    assert len(records) == summary["items"] == len({r.key for r in records})
    assert all(r.prompt for r in records)
    if which == "rcmu":
        rcid = summary["rcid"]
        assert rcid["n"] == 2 and rcid["CLIPScore"] is not None and rcid["RCIDScore"] is not None
        assert all(
            "rcid" in r.verdicts and r.verdicts["rcid"]["visual_text"] is not None for r in records if r.kind == "RCID"
        )
    if which == "rcpbench":
        assert summary["retrieval_hit_rate"] == 100.0  # dlib recognises every gallery person
        assert set(summary["rcp"]) == {"closed", "open", "oracle"}
    if which == "yollava":
        text = [r for r in records if r.kind == "text"]
        assert text and all(r.image is None and r.target_retrieved for r in text)  # recalled by name from memory


def test_tiny_run_resumes_after_a_kill(
    tiny: dict[str, Path], samples: Path, judge_server: FakeServer, tmp_path: Path
) -> None:
    full = tiny_run(tiny, judge_server.url, "yollava", samples / "yollava", tmp_path / "full")
    tiny_run(tiny, judge_server.url, "yollava", samples / "yollava", tmp_path / "cut", limit=2)
    assert len(read_records(tmp_path / "cut" / "items.jsonl")) == 2
    resumed = tiny_run(tiny, judge_server.url, "yollava", samples / "yollava", tmp_path / "cut")
    assert resumed == full
    keys = [r.key for r in read_records(tmp_path / "cut" / "items.jsonl")]
    assert len(keys) == len(set(keys)) == full["items"]


def _rcmu_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("rcmu")
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_runs_and_compares(samples: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": "", "HF_HUB_OFFLINE": "1"}
    with serve(FakeServer(responder=hashed_letter_responder("AB"))) as vlm:
        for name in ("a", "b"):
            done = _rcmu_cli(
                "eval",
                "yollava",
                "--data",
                str(samples / "yollava"),
                "--out",
                str(tmp_path / name),
                "--backend",
                "openai",
                "--base-url",
                vlm.url,
                "--model",
                f"model-{name}",
                "--concurrency",
                "2",
                cwd=tmp_path,
                env=env,
            )
            assert done.returncode == 0, done.stderr
            assert "Yo'LLaVA personalised QA accuracy" in done.stdout
    compared = _rcmu_cli(
        "eval",
        "compare",
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        "--write",
        str(tmp_path / "cmp.md"),
        cwd=tmp_path,
        env=env,
    )
    assert compared.returncode == 0, compared.stderr
    table = (tmp_path / "cmp.md").read_text()
    assert "a (model-a)" in table and "b (model-b)" in table and "| Yo'LLaVA overall |" in table
    assert "+0.00" in table  # the same blind model: no difference
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["yollava"]["overall"]["n"] == 6
    no_judge = _rcmu_cli(
        "eval", "rcmu", "--data", str(samples / RCMU), "--out", str(tmp_path / "c"), cwd=tmp_path, env=env
    )
    assert no_judge.returncode == 2 and "--judge" in no_judge.stderr
