"""kill -9 in the middle of memory writes never leaves a state no write committed, and an index run
killed anywhere leaves the list, recognition and text search of the library on the last committed
photo (see the two drivers). 50 rounds of kills in `remember` (new and update) and `forget` as `rcmu`
runs them, 50 more at the store's level, and 50 in `index`."""

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
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "TQDM_DISABLE": "1"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks a writer per round")
@pytest.mark.parametrize(("mode", "rounds"), [("assistant", 50), ("store", 50)])
def test_kill_9_during_remember_update_and_forget_leaves_a_committed_state(
    tmp_path: Path, faces_dir: Path, mode: str, rounds: int
) -> None:
    """ "assistant": writes through `Assistant.remember` / `Assistant.forget` (what `rcmu remember` and
    `rcmu forget` call) with real photos; "store": `MemoryStore` with random vectors, every kill inside
    the store's own write."""
    command = [
        sys.executable,
        str(DRIVER),
        str(tmp_path / "home"),
        str(rounds),
        "7",
        mode,
        str(faces_dir / "reference"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, env=ENV, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["rounds"] == rounds and report["mode"] == mode
    assert report["killed"] >= 20, report  # the kills really land inside writes
    assert min(report["killed_ops"].values()) >= 2, report  # new people, updates and forgets were all killed
    assert report["failures"] == [], report["failures"][:3]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks an indexer per round")
def test_kill_9_during_index_leaves_the_last_committed_photo_and_the_next_run_finishes(
    tmp_path: Path, shared_data: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    command = [sys.executable, str(INDEX_DRIVER), str(tmp_path / "home"), str(shared_data), str(library), "50", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["rounds"] == 50 and report["killed"] >= 25, report
    assert report["failures"] == [], report["failures"][:3]
    landed = report["landed"]
    assert landed["before any new commit"] >= 3 and landed["between commits"] >= 3, landed  # kills spread out
    # the last run indexed every photo: listed, Obama recognised in each, each found by text
    assert report["photos"] == report["found"] == report["searched"] == report["files"] == 102
