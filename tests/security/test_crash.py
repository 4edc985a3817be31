"""kill -9 in the middle of memory writes never leaves a state no write committed, and an index run
killed anywhere leaves the list, recognition and text search of the library on the last committed
photo (see the two drivers). 50 rounds of kills in `remember` (new and update) and `forget` as `rcmu`
runs them, 50 more at the store's level, and 50 in `index`.

Both storage modes (conftest.py's `store_env`): embedded runs every case; shared (PostgreSQL and a
Chroma server) runs the kills that matter for shared storage and not the rest again — inside the
store's writes (between the reference photos and the entity rows, which are rows in PostgreSQL and
vectors in Chroma there) and in the middle of an index (the library's tables in PostgreSQL), with
fewer rounds. After the last round each driver checks the stores themselves (`_stores`): after the
next writer's recovery, no journal, and exactly the listed photos and vectors of every entity; the
library's rows agree with its photos; and in shared mode nothing but caches under RCMU_HOME."""

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
SHARED_ROUNDS = 25  # shared mode: kills in the store's writes and mid-index only, half the rounds (wall time)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks a writer per round")
@pytest.mark.parametrize(
    ("store_env", "writes", "rounds"),
    [("embedded", "assistant", 50), ("embedded", "store", 50), ("shared", "store", SHARED_ROUNDS)],
    indirect=["store_env"],
)
def test_kill_9_during_remember_update_and_forget_leaves_a_committed_state(
    tmp_path: Path, faces_dir: Path, store_env: dict[str, str], writes: str, rounds: int
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
        writes,
        str(faces_dir / "reference"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, env={**ENV, **store_env}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["rounds"] == rounds and report["mode"] == writes and report["shared"] == bool(store_env)
    assert report["killed"] >= rounds * 2 // 5, report  # the kills really land inside writes
    assert min(report["killed_ops"].values()) >= 2, report  # new people, updates and forgets were all killed
    assert report["failures"] == [], report["failures"][:3]
    assert report["stores"] == [], report["stores"]  # the stores hold exactly what the entities list


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks an indexer per round")
@pytest.mark.parametrize(("store_env", "rounds"), [("embedded", 50), ("shared", SHARED_ROUNDS)], indirect=["store_env"])
def test_kill_9_during_index_leaves_the_last_committed_photo_and_the_next_run_finishes(
    tmp_path: Path, shared_data: Path, store_env: dict[str, str], rounds: int
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    home = str(tmp_path / "home")
    command = [sys.executable, str(INDEX_DRIVER), home, str(shared_data), str(library), str(rounds), "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**ENV, **store_env}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["shared"] == bool(store_env)  # the driver ran in the mode asked for
    assert report["rounds"] == rounds and report["killed"] >= rounds // 2, report
    assert report["failures"] == [], report["failures"][:3]
    landed = report["landed"]
    assert landed["before any new commit"] >= 3 and landed["between commits"] >= 3, landed  # kills spread out
    # the last run indexed every photo: listed, Obama recognised in each, each found by text
    files = 2 * (rounds + 1)
    assert report["photos"] == report["found"] == report["searched"] == report["files"] == files
    assert report["stores"] == [], report["stores"]  # the library's rows and vectors are those photos'
