"""kill -9 at random moments of memory writes, with a fresh reader after each kill.

Run as a script by test_crash.py: `python _crash_driver.py HOME ROUNDS SEED`. It prints one JSON report.

The parent imports everything and warms MiniLM once, then forks one child per round. Each child
opens the memory (its own Chroma client), first reads what a reader sees (list, recognition of every
reference vector ever used, text search) and sends it, then performs one write (a new person, an
update adding a photo, or a forget) and sends "done" if it gets that far. The parent kills it with
SIGKILL after a random delay. The next child's reading is compared with the states the killed write
may have left: the one before it, or (only) the one after it; a mixture of both is a torn write.

Reference vectors are random 128-d unit vectors, ~1.4 apart, so under dlib's 0.6 threshold a probe
matches exactly the one stored vector made from it: recognition says precisely which vectors count.
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

USER = "crash"
THRESHOLD = 0.6


def _vector(n: int) -> list[float]:
    v = np.random.default_rng(1000 + n).normal(size=128)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def _observe(store: Any, photos: int) -> dict[str, Any]:
    entities = store.entities(USER)
    listed = {e.name: {"info": e.info, "photos": sorted(Path(p).stem for p in e.photos)} for e in entities}
    probes = [_vector(n) for n in range(photos)]
    matches = [store.match_faces(USER, [probe], THRESHOLD)[0] for probe in probes]  # one face per question
    recognised = {str(n): [m.entity.name, round(m.distance, 3)] for n, m in enumerate(matches) if m is not None}
    found = store.search(USER, "person who likes", k=10)
    searched = {e.name: e.info for e, _ in found}
    return {"listed": listed, "recognised": recognised, "searched": searched}


def _child(home: Path, photos: int, ops: int, out: int) -> None:
    """Read, send what was seen, receive the write to do (chosen from what was seen), do it."""
    from rcmu_agent.memory import MemoryStore, ReferencePhoto

    try:
        store = MemoryStore(home, lock_timeout=30)
        os.write(out, (json.dumps(_observe(store, photos)) + "\n").encode())
        line = os.fdopen(ops, "rb").readline()
        if not line:
            return
        op = json.loads(line)
        began = time.monotonic()
        if op["kind"] == "forget":
            store.forget(USER, op["name"])
        else:
            refs = [ReferencePhoto(f"photo {n}".encode(), ".jpg", face_descriptor=_vector(n)) for n in op["photos"]]
            store.remember(USER, op["name"], op["info"], "person", refs)
        os.write(out, f"done {time.monotonic() - began:.4f}\n".encode())
    except BaseException as exc:  # a reader or writer error is a finding, not a crash of the driver
        os.write(out, (json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
    finally:
        os._exit(0)


def _digest(n: int) -> str:
    from rcmu_agent.memory._records import photo_digest

    return photo_digest(f"photo {n}".encode())


def _apply(state: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    new = {k: {"info": v["info"], "photos": list(v["photos"])} for k, v in state.items()}
    if op["kind"] == "forget":
        new.pop(op["name"], None)
    else:
        old = new.get(op["name"], {"photos": []})
        new[op["name"]] = {"info": op["info"], "photos": sorted({*old["photos"], *(_digest(n) for n in op["photos"])})}
    return new


def _next_op(rng: random.Random, state: dict[str, Any], counter: list[int]) -> dict[str, Any]:
    names = sorted(state)
    roll = rng.random()
    counter[0] += 1
    n = counter[0]
    if names and roll < 0.2:
        return {"kind": "forget", "name": rng.choice(names)}
    if names and roll < 0.65:
        return {"kind": "update", "name": rng.choice(names), "info": f"person who likes thing {n}", "photos": [n]}
    return {"kind": "new", "name": f"Person {n}", "info": f"person who likes hobby {n}", "photos": [n]}


def _verdict(seen: dict[str, Any], states: list[dict[str, Any]], photos: int) -> str | None:
    """None if `seen` is one of `states` exactly (list, recognition and search agreeing), else why not."""
    if "error" in seen:
        return f"reader failed: {seen['error']}"
    if seen["listed"] not in states:
        return f"list {seen['listed']} is none of the committed states {states}"
    state = seen["listed"]
    by_digest = {d: name for name, e in state.items() for d in e["photos"]}
    expected = {str(n): [by_digest[_digest(n)], 0.0] for n in range(photos) if _digest(n) in by_digest}
    if seen["recognised"] != expected:
        return f"recognition {seen['recognised']} disagrees with the list {state}"
    wrong = {name: info for name, info in seen["searched"].items() if state.get(name, {}).get("info") != info}
    if wrong:
        return f"search found {wrong}, not in the list {state}"
    return None


def main(home: Path, rounds: int, seed: int) -> dict[str, Any]:
    import chromadb.api.rust  # noqa: F401  (imported once here: a child then opens Chroma in ~50 ms)

    from rcmu_agent.memory.text_embedder import TextEmbedder

    TextEmbedder().embed(["warm up"])  # loaded once here; each forked child reuses it
    rng = random.Random(seed)
    state: dict[str, Any] = {}
    counter = [0]
    durations = [0.3]  # seconds a write takes here, measured as rounds complete
    report: dict[str, Any] = {"rounds": 0, "killed": 0, "completed": 0, "failures": [], "seconds": 0.0}
    start = time.monotonic()
    pending: tuple[dict[str, Any], dict[str, Any]] | None = None  # (state before, op) of a killed write
    for round_no in range(rounds + 1):
        read, write = os.pipe()
        ops_read, ops_write = os.pipe()
        photos = counter[0] + 1
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.close(ops_write)
            _child(home, photos, ops_read, write)
        os.close(write)
        os.close(ops_read)
        lines = os.fdopen(read, "rb")
        first = lines.readline()
        seen = json.loads(first) if first else {"error": "reader died"}
        allowed = [state] if pending is None else [pending[0], _apply(pending[0], pending[1])]
        why = _verdict(seen, allowed, photos)
        if why:
            report["failures"].append({"round": round_no, "why": why})
        if "listed" in seen:
            state = seen["listed"]
        if round_no == rounds:  # the last child only reads
            os.close(ops_write)
            os.waitpid(pid, 0)
            break
        op = _next_op(rng, state, counter)
        os.write(ops_write, (json.dumps(op) + "\n").encode())
        os.close(ops_write)
        time.sleep(rng.uniform(0.0, 1.1 * float(np.median(durations))))  # within the write, mostly
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        rest = lines.read().decode()
        lines.close()
        report["rounds"] += 1
        if "done" in rest:
            durations.append(float(rest.split("done", 1)[1].split()[0]))
            report["completed"] += 1
            state, pending = _apply(state, op), None
        else:
            report["killed"] += 1
            pending = (state, op)
        if "error" in rest:
            report["failures"].append({"round": round_no, "why": f"writer failed: {rest.strip()}"})
    report["seconds"] = round(time.monotonic() - start, 1)
    report["final"] = state
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
