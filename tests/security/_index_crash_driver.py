"""kill -9 at random moments of `index_library`, with a fresh reader after each kill.

Run by test_crash.py: `python _index_crash_driver.py HOME DATA LIBRARY ROUNDS SEED`; prints a JSON report.

Each round adds two new small photos of Barack Obama (400 px scenes with a coloured corner, so new
content: one with his face alone, one with him and another face) and forks an indexer, which reports
each photo it finishes; the parent kills it after a random delay (round 0 runs to the end, to measure
how long a run takes; kills then fall anywhere from before the lock to after the last commit). A
forked reader then looks the way `rcmu search` does: the list of indexed photos, the photos where
Obama is recognised, and a text search. Files are indexed in name order and each photo is its own
commit, so the committed state is always the first P files; the indexer's last report (d photos
finished) allows exactly P = d or d + 1 (the photo after d committed, its report not yet written),
and never fewer than before. The list must be exactly those files, recognition must find every one of
them whole (all its faces, Obama named), and text search only whole listed photos. A last, unkilled
run must then index every photo, and text search find them all.

The storage mode comes from the environment (RCMU_DATABASE_URL and RCMU_CHROMA_URL: shared, the
library's tables in PostgreSQL and its vectors in a Chroma server; neither: embedded). At the end the
library's tables and text vectors are read directly (`_stores.library_rows`, the Chroma collection):
one row per photo and path, each photo's faces, no text vector pending or missing; in shared mode
nothing but caches under the home. What disagrees is the report's "stores".
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

import numpy as np
from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.memory import TextEmbedder

FACES = (1, 2)  # faces in each round's two photos


def _settings(home: Path) -> Settings:
    # one process: the kill lands in the indexer itself (workers are spawned interpreters a kill would orphan)
    return Settings(
        home=home, object_detector=None, image_embedding_model=None, library_workers=1, library_min_similarity=-1
    )


def _fork(action: Any) -> tuple[int, Any]:
    """`action(out)` in a forked child writing lines to the returned pipe; any error is one JSON line."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            action(write)
        except BaseException as exc:
            os.write(write, (json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        finally:
            os._exit(0)
    os.close(write)
    return pid, os.fdopen(read, "rb")


def _index(assistant: Assistant, library: Path, out: int) -> None:
    """Index, writing `finished D` after each photo the indexer finishes and `done` at the end."""
    began = time.monotonic()
    assistant.index_library(library, progress=lambda done, total: os.write(out, f"finished {done}\n".encode()))
    os.write(out, f"done {time.monotonic() - began:.4f}\n".encode())


def _whole(hit: Any) -> dict[str, Any]:
    return {
        "rel": Path(hit.path).name,
        "exists": Path(hit.path).is_file(),
        "regions": len(hit.regions),
        "named": sorted(hit.regions[i].info for i in hit.matched_regions),
    }


def _read(assistant: Assistant, out: int) -> None:
    """What a fresh `rcmu search` process sees: every photo, Obama's photos, and a text search."""
    seen = {
        "listed": [_whole(h) for h in assistant.search_photos(limit=1000)],
        "people": [_whole(h) for h in assistant.search_photos(people=["Barack Obama"], limit=1000)],
        "text": [_whole(h) for h in assistant.search_photos(text="Barack Obama in a photo", limit=1000)],
    }
    os.write(out, (json.dumps(seen) + "\n").encode())


def _verdict(seen: dict[str, Any], files: list[str], allowed: set[int]) -> tuple[int | None, str | None]:
    """The committed prefix the reader saw, and why it is wrong (None when list, recognition and text
    search agree with one of the `allowed` prefixes)."""
    if "error" in seen:
        return None, f"reader failed: {seen['error']}"
    listed = sorted(h["rel"] for h in seen["listed"])
    if len(listed) not in allowed or listed != files[: len(listed)]:
        return None, f"listed {listed} is not one of the committed prefixes {sorted(allowed)} of {files}"
    faces = {name: FACES[int(name.rsplit("-", 1)[1].split(".")[0])] for name in files}
    for kind in ("listed", "people", "text"):
        hits = seen[kind]
        if len({h["rel"] for h in hits}) != len(hits):
            return None, f"{kind}: a photo appears twice: {hits}"
        torn = [h for h in hits if not h["exists"] or h["regions"] != faces[h["rel"]] or h["rel"] not in listed]
        if torn:
            return None, f"{kind}: partial or unlisted photos: {torn}"
    people = sorted(h["rel"] for h in seen["people"])
    if people != listed or any(h["named"] != ["Barack Obama"] for h in seen["people"]):
        return None, f"recognition {seen['people']} disagrees with the list {listed}"
    return len(listed), None


def _read_index_run(pipe: Any) -> tuple[int, float | None, str | None, dict[str, Any] | None]:
    """Photos the indexer reported finished, its duration if it got to the end, its error if any, and
    what it read after the end (the last run only)."""
    finished, duration, error, after = 0, None, None, None
    for raw in pipe.read().decode().splitlines():
        if raw.startswith("finished "):
            finished = int(raw.split()[1])
        elif raw.startswith("done "):
            duration = float(raw.split()[1])
        elif raw.startswith('{"listed"'):
            after = json.loads(raw)
        elif raw.strip():
            error = raw.strip()
    return finished, duration, error, after


def _new_photos(sources: list[Image.Image], library: Path, round_no: int) -> list[str]:
    names = []
    for k, image in enumerate(sources):
        copy = image.copy()
        marker = ((round_no * 37) % 256, (round_no * 91) % 256, 120 * k)  # new content every round
        copy.paste(marker, (0, 0, 16, 16))  # a block, not a pixel: JPEG would quantise a pixel away
        names.append(f"r{round_no:03d}-{k}.jpg")
        copy.save(library / names[-1], quality=90)
    return names


def _run(assistant: Assistant, library: Path, out: int, *, final: bool = False) -> None:
    """One fresh process: read what a reader sees now, then index (and, the last time, read again)."""
    _read(assistant, out)
    _index(assistant, library, out)
    if final:
        _read(assistant, out)


def _check_stores(assistant: Assistant, files: list[str]) -> list[str]:
    """The library's own rows and vectors after the last run, against the photos it indexed."""
    from _stores import kept_on_disk, library_rows

    from rcmu_agent.memory.library._store import TEXT_COLLECTION

    settings = assistant.settings
    faces = sum(FACES[int(name.rsplit("-", 1)[1].split(".")[0])] for name in files)
    want = {"photos": len(files), "paths": len(files), "regions": faces, "pending": 0}
    rows = library_rows(settings.home, settings.database_url)
    problems = [] if rows == want else [f"library rows {rows}, expected {want}"]
    vectors = assistant.parts.library.store.col(TEXT_COLLECTION).count()
    if vectors != len(files):
        problems.append(f"{vectors} text vectors for {len(files)} photos")
    if settings.database_url and kept_on_disk(settings.home):
        problems.append(f"the home keeps {kept_on_disk(settings.home)}")
    return problems


def main(home: Path, data: Path, library: Path, rounds: int, seed: int) -> dict[str, Any]:
    import chromadb.api.rust  # noqa: F401  (code only: no client is opened before a fork)

    rng = random.Random(seed)
    assistant = Assistant(_settings(home))
    assistant.parts.recognizer.face_detector.detect(Image.new("RGB", (64, 64)))
    assistant.parts.recognizer.face_encoder.encode(Image.new("RGB", (64, 64)), [])
    TextEmbedder().embed(["warm up"])  # loaded once here; each forked child reuses it
    ref = data / "faces" / "reference" / "obama_obama.jpg"
    pid, pipe = _fork(
        lambda out: os.write(
            out, b"%d\n" % len(assistant.remember("Barack Obama", info="44th president", photos=[ref]).photos)
        )
    )
    assert pipe.readline().strip() == b"1"
    os.waitpid(pid, 0)
    sources = []
    for name in ("obama1.jpg", "two_people.jpg"):
        with Image.open(data / "faces" / "scenes" / name) as img:
            small = img.convert("RGB")
        small.thumbnail((400, 400))  # faces still found; detection in tens of milliseconds
        sources.append(small)
    shared = assistant.settings.database_url is not None
    report: dict[str, Any] = {"shared": shared, "rounds": 0, "killed": 0, "failures": [], "photos": 0}
    report["landed"] = {"before any new commit": 0, "between commits": 0, "after the last commit": 0, "completed": 0}
    files: list[str] = []
    committed, durations = 0, []  # the committed prefix; seconds a whole run took
    allowed, last = {0}, None  # what the next reader may see; how the last run ended (killed?, files then)
    started = time.monotonic()
    for round_no in range(rounds + 2):  # round 0 runs to the end (how long a run takes); the last one too
        end = round_no == rounds + 1
        files += [] if end else _new_photos(sources, library, round_no)
        pid, pipe = _fork(lambda out, end=end: _run(assistant, library, out, final=end))
        seen = json.loads(pipe.readline() or b'{"error": "reader died"}')
        prefix, why = _verdict(seen, files, allowed)
        if why:
            report["failures"].append({"round": round_no - 1, "why": why})
        if last is not None and prefix is not None:
            killed, total = last
            where = (
                "completed" if not killed
                else "before any new commit" if prefix == committed
                else "after the last commit" if prefix == total
                else "between commits"
            )  # fmt: skip
            report["landed"][where] += 1
        committed = prefix if prefix is not None else committed
        limit = 1.1 * float(np.median(durations)) if durations else 0.0
        slept = rng.uniform(0.0, limit)
        if durations and not end:
            time.sleep(slept)
            os.kill(pid, signal.SIGKILL)
        finished, duration, error, after = _read_index_run(pipe)
        os.waitpid(pid, 0)
        if error:
            report["failures"].append({"round": round_no, "why": f"indexer failed: {error}"})
        if duration is not None:
            durations.append(duration)
            allowed = {len(files)}
        else:
            allowed = {committed} if finished < committed else {finished, min(finished + 1, len(files))}
            if slept > 0.8 * limit:  # killed after what a run was thought to take: runs take longer now
                durations.append(1.5 * limit)
        if round_no and not end:
            report["rounds"] += 1
            report["killed"] += duration is None
            last = (duration is None, len(files))
    final = after or {"error": "the last run did not finish"}
    prefix, why = _verdict(final, files, {len(files)})
    if why:
        report["failures"].append({"round": "final", "why": why})
    report["files"] = len(files)
    report["photos"] = len(final.get("listed", []))
    report["found"] = len(final.get("people", []))
    report["searched"] = len(final.get("text", []))
    report["seconds"] = round(time.monotonic() - started, 1)
    report["stores"] = _check_stores(assistant, files)  # every child has ended: the parent reads now
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(Path(args[0]), Path(args[1]), Path(args[2]), int(args[3]), int(args[4]))))
