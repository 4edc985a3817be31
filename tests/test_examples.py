"""The README's second command, run as a user would (a subprocess), with no model and with a tiny one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcmu_agent.testing import build_tiny_qwen2vl

pytestmark = pytest.mark.integration  # runs the examples as subprocesses

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "RCMU_HOME": str(tmp_path / "home"), **env}
    return subprocess.run(
        [sys.executable, str(QUICKSTART), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def test_quickstart_context_only(tmp_path: Path) -> None:
    done = run(tmp_path, "--context-only")
    assert done.returncode == 0, done.stderr
    assert "[1]: The information of the person located at <|box_start|>(224,71),(363,307)<|box_end|>" in done.stdout
    assert "[1] Barack Obama at (253, 47, 409, 203)" in done.stdout
    assert "[2] Joe Biden at (778, 57, 965, 243)" in done.stdout


def test_quickstart_with_a_local_model(tmp_path: Path) -> None:
    model = build_tiny_qwen2vl(tmp_path / "tiny")
    done = run(tmp_path, RCMU_MODEL=str(model), RCMU_MAX_NEW_TOKENS="8")
    assert done.returncode == 0, done.stderr
    assert "[1] Barack Obama" in done.stdout


def test_quickstart_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    done = run(tmp_path, RCMU_MODEL="/nonexistent/model")
    assert done.returncode == 2
    assert "--context-only" in done.stderr and "RCMU_MODEL" in done.stderr


def test_the_readme_test_kit_example_runs_as_written(tmp_path: Path, faces_dir: Path) -> None:
    """The README's "Testing your own integration" block, run verbatim with `tmp_path` bound and the
    photo beside it: the kit it advertises works as advertised."""
    readme = (QUICKSTART.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing your own integration", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "two_people.jpg").write_bytes((faces_dir / "scenes" / "two_people.jpg").read_bytes())
    script = f"from pathlib import Path\ntmp_path = Path({str(tmp_path / 'home')!r})\n{code}print('example ok')\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("example ok")
