"""Several processes remember, ask and index on one home at once, for a bounded time: nothing taught
is lost, every failure is a clear "busy" message, and the write lock waits long enough for a cold
write on a busy 2-core machine: an `rcmu remember` process starts from nothing (Python, dlib,
MiniLM, Chroma) while the warm writers keep writing, and neither it nor the warm writers are ever
told "busy" (with the default lock timeout).

Both storage modes (conftest.py's `store_env`). Shared, the processes meet in PostgreSQL and a Chroma
server, the writers' lock is the database's, the cold writer is a replica with an empty home of its own,
and neither home may keep anything but caches afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rcmu_agent import Assistant, Settings

from ._stores import kept_on_disk, service_settings

pytestmark = pytest.mark.integration  # a soak run in a subprocess

DRIVER = Path(__file__).with_name("_soak_driver.py")
SECONDS = 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks the processes")
def test_processes_sharing_one_home_lose_nothing(tmp_path: Path, shared_data: Path, store_env: dict[str, str]) -> None:
    home, out = tmp_path / "home", tmp_path / "outcomes.jsonl"
    library = tmp_path / "library"
    library.mkdir()
    shutil.copy(shared_data / "faces" / "scenes" / "two_people.jpg", library / "two.jpg")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "TQDM_DISABLE": "1", **store_env}
    busy = "another replica is writing" if store_env else "another rcmu process is writing"
    roles = ["remember", "remember", "ask", "index", "cold"]
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(home), str(shared_data), str(out), str(SECONDS), str(library), *roles],
        env=env,
        capture_output=True,
        text=True,
        timeout=SECONDS + 240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = [json.loads(line) for line in out.read_text().splitlines()]
    assert {o["role"] for o in outcomes if o["ok"]} == set(roles), outcomes  # every role got work done
    failures = [o for o in outcomes if not o["ok"]]
    assert all(o["kind"] == "MemoryLockedError" and busy in o["error"] for o in failures), failures
    assert not [o for o in failures if o["role"] in ("remember", "cold")], failures  # the lock waited long enough
    colds = [o for o in outcomes if o["role"] == "cold"]
    assert len(colds) == 1 and all(o["ok"] for o in colds), colds
    # its models and Chroma were loaded before it took the lock: it held it no longer than a warm write
    # does, far below the default 10 s other writers wait (before, opening Chroma under it took ~2 s)
    assert all(o["lock"] and o["lock"]["held"] < 2.5 for o in colds), [o["lock"] for o in colds]
    for c in colds:  # the cold write really ran among warm writes, which went on committing meanwhile
        during = [o for o in outcomes if o["role"] == "remember" and o["ok"] and c["start"] < o["end"] < c["end"]]
        assert during, (c, outcomes)

    settings = Settings(home=home, object_detector=None, image_embedding_model=None, **service_settings(store_env))
    memory = Assistant(settings)
    listed = {e.name: e for e in memory.entities()}
    taught = [o for o in outcomes if o["role"] in ("remember", "cold") and o["ok"]]
    assert taught and all(o["name"] in listed for o in taught)  # nothing committed was lost
    for o in taught:
        if "photos" in o:
            assert len(listed[o["name"]].photos) == o["photos"]
    asked = {name for o in outcomes if o["role"] == "ask" and o["ok"] for name in o["names"]}
    assert asked <= set(listed)
    indexed = [o["photos"] for o in outcomes if o["role"] == "index" and o["ok"]]
    assert indexed and set(indexed) == {1}, indexed  # the one photo, however many times it was re-indexed
    (photo,) = memory.search_photos(limit=5)  # the library holds it once, whole: both faces
    assert Path(photo.path) == (library / "two.jpg").resolve() and len(photo.regions) == 2, photo
    assert [h.id for h in memory.search_photos(text="two people in two.jpg", limit=5)] == [photo.id]
    if store_env:  # everything above was read from PostgreSQL and the Chroma server
        assert kept_on_disk(home) == [] and kept_on_disk(home.with_name("cold-home")) == []
