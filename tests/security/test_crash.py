"""kill -9 in the middle of memory writes never leaves a state no write committed, and an index run
killed anywhere never shows a partial photo (see the two drivers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # killed subprocesses

DRIVER = Path(__file__).with_name("_crash_driver.py")
INDEX_DRIVER = Path(__file__).with_name("_index_crash_driver.py")


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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks an indexer per round")
def test_kill_9_during_index_never_shows_a_partial_photo_and_the_next_run_finishes(
    tmp_path: Path, shared_data: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "TQDM_DISABLE": "1"}
    done = subprocess.run(
        [sys.executable, str(INDEX_DRIVER), str(tmp_path / "home"), str(shared_data), str(library), "5", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["rounds"] == 5 and report["killed"] >= 1, report
    assert report["failures"] == [], report["failures"][:3]
    assert report["photos"] == report["found"] == 10  # the last run indexed and recognised every photo
