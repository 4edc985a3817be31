"""kill -9 in the middle of memory writes never leaves a state no write committed (see _crash_driver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("_crash_driver.py")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks a writer per round")
def test_kill_9_during_remember_update_and_forget_leaves_a_committed_state(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(tmp_path / "home"), "50", "7"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["rounds"] == 50
    assert report["killed"] >= 10, report  # the kills really land inside writes
    assert report["failures"] == [], report["failures"][:3]
