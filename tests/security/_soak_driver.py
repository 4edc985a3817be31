"""Soak-test processes: `python _soak_driver.py HOME DATA OUT SECONDS LIBRARY ROLE...`.

The driver loads the models once (dlib, MiniLM, Chroma's code), then forks one process per ROLE, so
the test spends its time on contention rather than on four cold starts; each process opens the memory
and the library itself. ROLE is "remember" (teaches new people, and updates every other one with a
second photo), "ask" (context-only questions about a scene) or "index" (re-indexes a small library,
touching a file each time). Every call's outcome is appended to OUT as one JSON line: {"ok": true,
...} or {"ok": false, "error": ..., "kind": ...}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.errors import RcmuError
from rcmu_agent.memory import TextEmbedder


def work(assistant: Assistant, role: str, data: Path, out: Path, seconds: float, folder: Path) -> None:
    ref, scenes = data / "faces" / "reference", data / "faces" / "scenes"
    photos = [ref / "obama_obama.jpg", ref / "biden_biden.jpg", ref / "rose_leslie_img1.jpg"]
    end = time.monotonic() + seconds
    n = 0
    with out.open("a") as log:
        while time.monotonic() < end:
            n += 1
            record: dict[str, object] = {"role": role, "n": n}
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
            log.write(json.dumps(record) + "\n")
            log.flush()


def main(home: Path, data: Path, out: Path, seconds: float, folder: Path, roles: list[str]) -> int:
    import chromadb.api.rust  # noqa: F401  (code only: no client is opened before the fork)

    assistant = Assistant(Settings(home=home, object_detector=None, image_embedding_model=None))
    assistant.parts.recognizer.face_detector.detect(Image.new("RGB", (64, 64)))
    assistant.parts.recognizer.face_encoder.encode(Image.new("RGB", (64, 64)), [])
    TextEmbedder().embed(["warm up"])
    children = []
    for role in roles:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                work(assistant, role, data, out, seconds, folder)
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
