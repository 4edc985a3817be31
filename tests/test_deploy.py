"""The documented deployment check (README, "Several replicas"): deploy/check.sh starts the real services
without Docker — PostgreSQL from the machine's binaries, `chroma run`, the fake OpenAI-compatible model
server, two `rcmu mcp --http` replicas with empty homes of their own — teaches through one replica, asks
through the other, and stops and removes everything (about a minute on the shared 2-core machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # PostgreSQL, Chroma, a model server and two replicas as processes


def test_the_documented_check_starts_a_deployment_without_docker_and_passes() -> None:
    """deploy/check.sh, as the README tells an operator to run it: its own PostgreSQL, Chroma server,
    model server and two replicas; teach through one, ask through the other; everything stopped after."""
    script = Path(__file__).resolve().parents[1] / "deploy" / "check.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("RCMU_BASE_URL", None)  # the script's own fake model server
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "second replica: recognised Barack Obama; the model answered: Barack Obama [1] is in the photo." in lines
    assert "second replica: shows 1 reference photo(s) of Barack Obama" in lines
    assert lines[-1] == "ok: the two replicas share one memory"
    replicas = next(line for line in lines if line.startswith("replicas: "))
    work = Path(replicas.split("(RCMU_HOME ", 1)[1].split()[0]).parent
    assert work.name.startswith("rcmu-deploy.") and not work.exists()  # the script leaves nothing behind
