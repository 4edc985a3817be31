"""Soak-test processes: `python _soak_driver.py HOME DATA OUT SECONDS LIBRARY ROLE...`.

The driver loads the models once (dlib, MiniLM, Chroma's code), then forks one process per ROLE, so
the test spends its time on contention rather than on cold starts; each process opens the memory
and the library itself. ROLE is "remember" (teaches new people, and updates every other one with a
second photo), "ask" (context-only questions about a scene), "index" (re-indexes a small library,
touching a file each time) or "cold" (runs `rcmu remember` as a new interpreter, COLD_WRITES times, one
after the other: each loads Python, dlib, MiniLM and Chroma from nothing while the others write). The warm roles
keep going for SECONDS, and for as long as a cold write is still running (at most COLD_CAP seconds).
Every call's outcome is appended to OUT as one JSON line: {"ok": true, ...} or {"ok": false,
"error": ..., "kind": ...}, with its start and end (seconds since the driver started).

With RCMU_DATABASE_URL and RCMU_CHROMA_URL in the environment (the shared storage mode) the processes
meet in PostgreSQL and the Chroma server, and the cold writer is a replica with a home of its own
(`cold-home` beside HOME), as a process on another machine would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.errors import RcmuError
from rcmu_agent.memory import TextEmbedder

COLD_CAP = 150.0  # seconds: the warm roles stop by then even if a cold write hangs
COLD_WRITES = 1  # each takes tens of seconds among the warm roles on 2 cores
STARTED = time.monotonic()


def cold(home: Path, photo: Path, out: Path, done: Path) -> None:
    """`rcmu remember` in new interpreters (the default lock timeout), one after the other, each
    reporting how long it waited for and held the write lock (`_cold_remember.py`)."""
    wrapper, holds = Path(__file__).with_name("_cold_remember.py"), out.with_name("cold-holds.jsonl")
    own = home.with_name("cold-home") if os.environ.get("RCMU_DATABASE_URL") else home  # shared: another machine
    env = {**os.environ, "RCMU_HOME": str(own), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}
    env.pop("RCMU_LOCK_TIMEOUT", None)
    try:
        for n in range(1, COLD_WRITES + 1):
            name = f"Cold {n}"
            began = time.monotonic() - STARTED
            done_run = subprocess.run(
                [sys.executable, str(wrapper), str(holds), "remember", name, "-p", str(photo), "-i", f"soak {n}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=COLD_CAP,
                check=False,
            )
            record: dict[str, object] = {"role": "cold", "n": n, "name": name, "ok": done_run.returncode == 0}
            if done_run.returncode:
                busy = "another rcmu process is writing" in done_run.stderr
                record.update(error=done_run.stderr.strip()[-500:], kind="MemoryLockedError" if busy else "exit")
            record.update(start=round(began, 2), end=round(time.monotonic() - STARTED, 2))
            lines = holds.read_text().splitlines() if holds.exists() else []
            record["lock"] = json.loads(lines[-1]) if lines else None
            with out.open("a") as log:
                log.write(json.dumps(record) + "\n")
    finally:
        done.touch()


def work(assistant: Assistant, role: str, data: Path, out: Path, seconds: float, folder: Path, done: Path) -> None:
    ref, scenes = data / "faces" / "reference", data / "faces" / "scenes"
    photos = [ref / "obama_obama.jpg", ref / "biden_biden.jpg", ref / "rose_leslie_img1.jpg"]
    end, cap = time.monotonic() + seconds, time.monotonic() + COLD_CAP
    n = 0
    with out.open("a") as log:
        while time.monotonic() < cap and (time.monotonic() < end or not done.exists()):
            n += 1
            record: dict[str, object] = {"role": role, "n": n, "start": round(time.monotonic() - STARTED, 2)}
            try:
                if role == "remember":
                    name = f"Soak {os.getpid()} {n}"
                    entity = assistant.remember(name, info=f"soak person {n}", photos=[photos[n % 3]])
                    record["name"] = entity.name
                    if n % 2 == 0:
                        updated = assistant.remember(
                            name, info=f"soak person {n}, updated", photos=[photos[(n + 1) % 3]]
                        )
                        record["photos"] = len(updated.photos)
                elif role == "ask":
                    answer = assistant.ask("Who is here?", scenes / "two_people.jpg", context_only=True)
                    record["names"] = [r.name for r in answer.regions if r.name]
                else:
                    (folder / "touched.txt").write_text(str(n))
                    os.utime(folder / "two.jpg")
                    report = assistant.index_library(folder)
                    record["photos"] = report.photos
                record["ok"] = True
            except RcmuError as exc:
                record.update(ok=False, error=str(exc), kind=type(exc).__name__)
            record["end"] = round(time.monotonic() - STARTED, 2)
            log.write(json.dumps(record) + "\n")
            log.flush()


def main(home: Path, data: Path, out: Path, seconds: float, folder: Path, roles: list[str]) -> int:
    import chromadb.api.rust  # noqa: F401  (code only: no client is opened before the fork)

    assistant = Assistant(Settings(home=home, object_detector=None, image_embedding_model=None))
    assistant.parts.recognizer.face_detector.detect(Image.new("RGB", (64, 64)))
    assistant.parts.recognizer.face_encoder.encode(Image.new("RGB", (64, 64)), [])
    TextEmbedder().embed(["warm up"])
    done = out.with_name("cold-done")
    if "cold" not in roles:
        done.touch()
    children = []
    for role in roles:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if role == "cold":
                    cold(home, data / "faces" / "reference" / "kit_harington_john1.jpeg", out, done)
                else:
                    work(assistant, role, data, out, seconds, folder, done)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    return int(any(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children))


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(Path(args[0]), Path(args[1]), Path(args[2]), float(args[3]), Path(args[4]), args[5:]))
