"""kill -9 at random moments of `index_library`, with a fresh reader after each kill.

Run by test_crash.py: `python _index_crash_driver.py HOME DATA LIBRARY ROUNDS SEED`; prints a JSON report.
Each round adds two new photos of Barack Obama (re-encoded, so new content) and forks an indexer that
is killed after a random delay; a forked reader then searches for him. Whatever the kill interrupted,
a reader must only see whole photos: every hit exists on disk, appears once, and has its faces with
Obama among them. A last, unkilled run must then index every photo.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.memory import TextEmbedder


def _settings(home: Path) -> Settings:
    # one process: the kill lands in the indexer itself (workers are spawned interpreters a kill would orphan)
    return Settings(home=home, object_detector=None, image_embedding_model=None, library_workers=1)


def _in_child(action: Any, out: int) -> None:
    try:
        result = action()
        os.write(out, (json.dumps(result) + "\n").encode())
    except BaseException as exc:
        os.write(out, (json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
    finally:
        os._exit(0)


def _fork(action: Any) -> tuple[int, Any]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _in_child(action, write)
    os.close(write)
    return pid, os.fdopen(read, "rb")


def _read(assistant: Assistant) -> dict[str, Any]:
    hits = assistant.search_photos(people=["Barack Obama"], limit=50)
    return {
        "hits": [
            {
                "id": h.id,
                "path": h.path,
                "exists": Path(h.path).is_file(),
                "regions": len(h.regions),
                "named": [h.regions[i].info for i in h.matched_regions],
            }
            for h in hits
        ]
    }


def _verdict(seen: dict[str, Any]) -> str | None:
    if "error" in seen:
        return f"reader failed: {seen['error']}"
    hits = seen["hits"]
    if len({h["id"] for h in hits}) != len(hits):
        return f"a photo appears twice: {hits}"
    torn = [h for h in hits if not h["exists"] or not h["regions"] or h["named"] != ["Barack Obama"]]
    return f"partial photos seen: {torn}" if torn else None


def main(home: Path, data: Path, library: Path, rounds: int, seed: int) -> dict[str, Any]:
    import chromadb.api.rust  # noqa: F401  (code only: no client is opened before a fork)

    rng = random.Random(seed)
    assistant = Assistant(_settings(home))
    assistant.parts.recognizer.face_detector.detect(Image.new("RGB", (64, 64)))
    assistant.parts.recognizer.face_encoder.encode(Image.new("RGB", (64, 64)), [])
    TextEmbedder().embed(["warm up"])  # loaded once here; each forked child reuses it
    ref = data / "faces" / "reference" / "obama_obama.jpg"
    pid, pipe = _fork(lambda: bool(assistant.remember("Barack Obama", info="44th president", photos=[ref])))
    assert json.loads(pipe.readline()) is True
    os.waitpid(pid, 0)
    sources = [Image.open(data / "faces" / "scenes" / n).convert("RGB") for n in ("obama1.jpg", "two_people.jpg")]
    report: dict[str, Any] = {"rounds": 0, "killed": 0, "failures": [], "photos": 0}
    for round_no in range(rounds):
        for k, image in enumerate(sources):
            image.save(library / f"r{round_no}-{k}.jpg", quality=70 + round_no)  # new content every round
        pid, pipe = _fork(lambda: assistant.index_library(library).photos)
        time.sleep(rng.uniform(0.1, 1.5))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        report["killed"] += not pipe.read()
        report["rounds"] += 1
        pid, pipe = _fork(lambda: _read(assistant))
        seen = json.loads(pipe.readline() or b'{"error": "reader died"}')
        os.waitpid(pid, 0)
        why = _verdict(seen)
        if why:
            report["failures"].append({"round": round_no, "why": why})
    pid, pipe = _fork(lambda: {"photos": assistant.index_library(library).photos, **_read(assistant)})
    final = json.loads(pipe.readline() or b'{"error": "indexer died"}')
    os.waitpid(pid, 0)
    why = _verdict(final)
    if why:
        report["failures"].append({"round": "final", "why": why})
    report["photos"] = final.get("photos", 0)
    report["found"] = len(final.get("hits", []))
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(Path(args[0]), Path(args[1]), Path(args[2]), int(args[3]), int(args[4]))))
