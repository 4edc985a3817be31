"""`rcmu eval` errors that must point at the fix that works (issue 22)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rcmu_agent.cli import app

pytestmark = pytest.mark.integration  # tries to load a CLIP model (transformers)

runner = CliRunner()


def test_a_clip_model_that_cannot_load_names_the_clip_option(samples: Path, tmp_path: Path) -> None:
    """Offline, the CLIP model of RCIDScore cannot load. RCMU_IMAGE_EMBEDDING_MODEL (the photo library's
    setting, often already empty) does not reach it: the fix is --clip, a local directory or ''."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_BASE_URL": "http://127.0.0.1:9/v1",  # never reached: the run stops before any question
    }
    out = tmp_path / "run"
    args = ["eval", "rcmu", "--data", str(samples / "rcmu" / "test.jsonl"), "--out", str(out), "--judge", "judge"]
    result = runner.invoke(app, [*args, "--clip", "nobody/no-such-clip"], env=env, catch_exceptions=False)
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    problem, fix = line.removeprefix("error: ").split(" — ")
    assert problem.startswith("cannot load the CLIP model 'nobody/no-such-clip' for RCIDScore: "), problem
    assert fix == (
        "give --clip a local directory holding a CLIP model, or --clip '' to run without it "
        "(RCID items then get their context scores but no RCIDScore)"
    )
    assert "RCMU_IMAGE_EMBEDDING_MODEL" not in line
    assert not out.exists()  # nothing was done, nothing left behind
    missing = tmp_path / "clip"
    result = runner.invoke(app, [*args, "--clip", str(missing)], env=env, catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: cannot load the CLIP model '{missing}' for RCIDScore: image embedding model directory '{missing}' "
        "does not exist — give --clip a local directory holding a CLIP model, or --clip '' to run without it "
        "(RCID items then get their context scores but no RCIDScore)"
    )
