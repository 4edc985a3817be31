"""kill -9 at random moments of memory writes, with a fresh reader after each kill.

Run as a script by test_crash.py: `python _crash_driver.py HOME ROUNDS SEED [MODE [FACES]]`. It prints
one JSON report.

The parent imports everything and warms MiniLM once, then forks one child per round. Each child
opens the memory (its own Chroma client), first reads what a reader sees (list, recognition of every
reference vector ever used, text search) and sends it, then performs one write (a new person, an
update adding a photo, or a forget) and sends "done" if it gets that far. The parent kills it with
SIGKILL after a random delay. The next child's reading is compared with the states the killed write
may have left: the one before it, or (only) the one after it; a mixture of both is a torn write.

MODE "store" (the default) writes through `MemoryStore` with random 128-d unit vectors, ~1.4 apart,
so a probe matches exactly the one stored vector made from it. MODE "assistant" writes the way `rcmu
remember` / `rcmu forget` do, through `Assistant.remember` (photo bytes decoded, dlib face found and
described, then stored) and `Assistant.forget`, with small real face photos from FACES (each one a
distinct file, a few pixels smaller than the last copy of that face); the parent describes each photo once with the same
dlib models, so the reader knows every stored vector. Either way the expected recognition of a probe
is the nearest committed vector under dlib's 0.6 threshold, asked through `Recognizer.match` as `ask` does.

The storage mode comes from the environment (RCMU_DATABASE_URL and RCMU_CHROMA_URL: shared; neither:
embedded). After the last round the parent runs the recovery the next writer would and reads the
stores themselves (`_stores`): no journal left, and each listed entity holds exactly its listed photos
and their vectors (in shared mode, rows in PostgreSQL and the Chroma server; and nothing but caches
under the home); what it finds wrong is the report's "stores".
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from rcmu_agent.images import load_image
from rcmu_agent.memory._records import photo_digest
from rcmu_agent.schema import Region

USER = "crash"
THRESHOLD = 0.6
UNKILLED = 3  # rounds run to the end first: people to update and forget, and how long a write takes


class Photos:
    """Photo `n`: its bytes and the face vector recognition stores for it (see the module doc)."""

    def __init__(self, assistant: Any, faces: Path | None) -> None:
        self.assistant, self.sources, self._cache = assistant, [], {}
        for path in sorted(faces.iterdir()) if faces is not None else []:
            with Image.open(path) as img:
                small = ImageOps.exif_transpose(img).convert("RGB")
            small.thumbnail((320, 320))  # a face still ~100 px wide; detection in tens of ms
            self.sources.append(small)

    def get(self, n: int) -> tuple[bytes, list[float]]:
        if n not in self._cache:
            self._cache[n] = self._real(n) if self.sources else self._random(n)
        return self._cache[n]

    @staticmethod
    def _random(n: int) -> tuple[bytes, list[float]]:
        v = np.random.default_rng(1000 + n).normal(size=128)
        return f"photo {n}".encode(), (v / np.linalg.norm(v)).astype(np.float32).tolist()

    def _real(self, n: int) -> tuple[bytes, list[float]]:
        image = self.sources[n % len(self.sources)]
        side = 320 - 4 * (n // len(self.sources))  # each copy of a face a little smaller: its own vector
        image = image.resize((side * image.width // 320, side * image.height // 320))
        image.putpixel((0, 0), (n % 256, n // 256, 7))  # and distinct bytes: a distinct stored photo
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        described = self.assistant.parts.recognizer.describe_reference(load_image(buffer.getvalue()), "person")
        return buffer.getvalue(), list(described.face_descriptor)

    def digest(self, n: int) -> str:
        return photo_digest(self.get(n)[0])


def _observe(assistant: Any, photos: Photos, count: int) -> dict[str, Any]:
    """What `rcmu list`, recognition in `rcmu ask` (one face per question) and memory search show."""
    entities = assistant.entities(user=USER)
    listed = {e.name: {"info": e.info, "photos": sorted(Path(p).stem for p in e.photos)} for e in entities}
    recognised = {}
    for n in range(count):
        face = Region(box=(0, 0, 10, 10), category="person", source="face", descriptor=photos.get(n)[1])
        (entry,) = assistant.parts.recognizer.match(USER, [face])
        if entry.name is not None:
            recognised[str(n)] = [entry.name, round(entry.distance or 0.0, 3)]
    found = assistant.parts.memory.search(USER, "person who likes", k=10)
    searched = {e.name: e.info for e, _ in found}
    return {"listed": listed, "recognised": recognised, "searched": searched}


def _write(assistant: Any, photos: Photos, op: dict[str, Any], through_assistant: bool) -> None:
    from rcmu_agent.memory import ReferencePhoto

    if op["kind"] == "forget":
        if through_assistant:
            assistant.forget(op["name"], user=USER)
        else:
            assistant.parts.memory.forget(USER, op["name"])
    elif through_assistant:
        shots = [photos.get(n)[0] for n in op["photos"]]
        assistant.remember(op["name"], info=op["info"], photos=shots, user=USER)
    else:
        refs = [ReferencePhoto(photos.get(n)[0], ".jpg", face_descriptor=photos.get(n)[1]) for n in op["photos"]]
        assistant.parts.memory.remember(USER, op["name"], op["info"], "person", refs)


def _child(photos: Photos, count: int, ops: int, out: int, through_assistant: bool) -> None:
    """Read, send what was seen, receive the write to do (chosen from what was seen), do it. The
    parent's Assistant came with the fork, its models loaded and its memory never opened: this
    process opens its own Chroma client, as a new `rcmu` process would."""
    assistant = photos.assistant
    try:
        os.write(out, (json.dumps(_observe(assistant, photos, count)) + "\n").encode())
        line = os.fdopen(ops, "rb").readline()
        if not line:
            return
        op = json.loads(line)
        began = time.monotonic()
        _write(assistant, photos, op, through_assistant)
        os.write(out, f"done {time.monotonic() - began:.4f}\n".encode())
    except BaseException as exc:  # a reader or writer error is a finding, not a crash of the driver
        os.write(out, (json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
    finally:
        os._exit(0)


def _settings(home: Path) -> Any:
    from rcmu_agent import Settings

    return Settings(home=home, object_detector=None, image_embedding_model=None, lock_timeout=30)


def _check_stores(assistant: Any) -> list[str]:
    """What the stores hold beyond (or short of) what the listed entities name, once the recovery the
    next writer runs has run; in shared mode also any file under the home that is not a cache."""
    from _stores import journal, kept_on_disk, reference_key, references

    memory, settings = assistant.parts.memory, assistant.settings
    memory.recover()
    problems = []
    left = journal(settings.home, settings.database_url)
    if left is not None:
        problems.append(f"a journal is left after recovery: {left[:200]}")
    stored = references(settings.home, settings.database_url, USER)
    for entity in assistant.entities(user=USER):
        listed = sorted(reference_key(USER, p) for p in entity.photos)
        held = [key for key in stored if key.split("/")[1] == entity.id]
        if held != listed:
            problems.append(f"{entity.name}: stored photos {held}, listed {listed}")
        vectors = sorted(memory._col("faces").get(where={"entity_id": entity.id}, include=[])["ids"])
        if vectors != sorted(f"{entity.id}:{Path(p).stem}" for p in entity.photos):
            problems.append(f"{entity.name}: face vectors {vectors}, listed photos {entity.photos}")
    if settings.database_url and kept_on_disk(settings.home):
        problems.append(f"the home keeps {kept_on_disk(settings.home)}")
    return problems


def _apply(state: dict[str, Any], op: dict[str, Any], digest: Any) -> dict[str, Any]:
    new = {k: {"info": v["info"], "photos": list(v["photos"])} for k, v in state.items()}
    if op["kind"] == "forget":
        new.pop(op["name"], None)
    else:
        old = new.get(op["name"], {"photos": []})
        new[op["name"]] = {"info": op["info"], "photos": sorted({*old["photos"], *(digest(n) for n in op["photos"])})}
    return new


def _next_op(rng: random.Random, state: dict[str, Any], counter: list[int]) -> dict[str, Any]:
    names = sorted(state)
    roll = rng.random()
    counter[0] += 1
    n = counter[0]
    if names and roll < 0.25:
        return {"kind": "forget", "name": rng.choice(names)}
    if names and roll < 0.65:
        return {"kind": "update", "name": rng.choice(names), "info": f"person who likes thing {n}", "photos": [n]}
    return {"kind": "new", "name": f"Person {n}", "info": f"person who likes hobby {n}", "photos": [n]}


def _expected(state: dict[str, Any], photos: Photos, count: int) -> dict[str, list[Any]]:
    """Recognition the committed `state` gives: for each probe, the nearest stored distance under the
    threshold and every name holding a vector that near (two photos of one face can tie)."""
    stored = {photos.digest(n): n for n in range(count)}
    held = [(name, stored[d]) for name, e in state.items() for d in e["photos"] if d in stored]
    out: dict[str, list[Any]] = {}
    if not held:
        return out
    matrix = np.asarray([photos.get(m)[1] for _, m in held], dtype=np.float32)
    for n in range(count):
        distances = np.linalg.norm(matrix - np.asarray(photos.get(n)[1], dtype=np.float32), axis=1)
        best = float(distances.min())
        if best < THRESHOLD:
            out[str(n)] = [sorted({held[i][0] for i in np.flatnonzero(distances <= best + 0.002)}), round(best, 3)]
    return out


def _same_recognition(seen: dict[str, list[Any]], expected: dict[str, list[Any]]) -> bool:
    """Recognised the same probes, each as one of the nearest names, at the same distance (float32 aside)."""
    return seen.keys() == expected.keys() and all(
        seen[k][0] in expected[k][0] and abs(seen[k][1] - expected[k][1]) <= 0.002 for k in seen
    )


def _verdict(seen: dict[str, Any], states: list[dict[str, Any]], photos: Photos, count: int) -> str | None:
    """None if `seen` is one of `states` exactly (list, recognition and search agreeing), else why not."""
    if "error" in seen:
        return f"reader failed: {seen['error']}"
    if seen["listed"] not in states:
        return f"list {seen['listed']} is none of the committed states {states}"
    state = seen["listed"]
    expected = _expected(state, photos, count)
    if not _same_recognition(seen["recognised"], expected):
        return f"recognition {seen['recognised']} disagrees with the list {state} (expected {expected})"
    wrong = {name: info for name, info in seen["searched"].items() if state.get(name, {}).get("info") != info}
    if wrong:
        return f"search found {wrong}, not in the list {state}"
    return None


def main(home: Path, rounds: int, seed: int, mode: str = "store", faces: Path | None = None) -> dict[str, Any]:
    import chromadb.api.rust  # noqa: F401  (imported once here: a child then opens Chroma in ~50 ms)

    from rcmu_agent import Assistant
    from rcmu_agent.memory.text_embedder import TextEmbedder

    TextEmbedder().embed(["warm up"])  # loaded once here; each forked child reuses it
    assistant = Assistant(_settings(home))  # its memory is opened only in the children
    through_assistant = mode == "assistant"
    photos = Photos(assistant, faces if through_assistant else None)
    photos.get(0)  # loads and warms dlib (assistant mode) before the first fork
    rng = random.Random(seed)
    state: dict[str, Any] = {}
    counter = [0]
    took: dict[str, float] = {}  # seconds each kind of write takes here, updated as rounds end
    shared = assistant.settings.database_url is not None
    report: dict[str, Any] = {"mode": mode, "shared": shared, "rounds": 0, "killed": 0, "completed": 0, "failures": []}
    report["killed_ops"] = {"new": 0, "update": 0, "forget": 0}  # the writes a kill interrupted, by kind
    start = time.monotonic()
    pending: tuple[dict[str, Any], dict[str, Any]] | None = None  # (state before, op) of a killed write
    for round_no in range(UNKILLED + rounds + 1):  # the first rounds are not killed; the last one only reads
        read, write = os.pipe()
        ops_read, ops_write = os.pipe()
        count = counter[0] + 1
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.close(ops_write)
            _child(photos, count, ops_read, write, through_assistant)
        os.close(write)
        os.close(ops_read)
        lines = os.fdopen(read, "rb")
        first = lines.readline()
        seen = json.loads(first) if first else {"error": "reader died"}
        allowed = [state] if pending is None else [pending[0], _apply(pending[0], pending[1], photos.digest)]
        why = _verdict(seen, allowed, photos, count)
        if why:
            report["failures"].append({"round": round_no, "why": why})
        if "listed" in seen:
            state = seen["listed"]
        if round_no == UNKILLED + rounds:
            os.close(ops_write)
            os.waitpid(pid, 0)
            break
        op = _next_op(rng, state, counter)
        for n in op.get("photos", []):
            photos.get(n)  # described here before the write starts, so the sleep below is all write
        os.write(ops_write, (json.dumps(op) + "\n").encode())
        os.close(ops_write)
        guess = took.get(op["kind"]) or max(took.values(), default=0.0)
        limit = 1.5 * guess  # two kills in three inside the write, spread over all of it
        slept = rng.uniform(0.0, limit)
        if round_no >= UNKILLED:
            time.sleep(slept)  # within the write, mostly
            os.kill(pid, signal.SIGKILL)
        rest = lines.read().decode()
        os.waitpid(pid, 0)
        lines.close()
        report["rounds"] += round_no >= UNKILLED
        if "done" in rest:
            spent = float(rest.split("done", 1)[1].split()[0])
            took[op["kind"]] = (took[op["kind"]] + spent) / 2 if op["kind"] in took else spent
            report["completed"] += round_no >= UNKILLED
            state, pending = _apply(state, op, photos.digest), None
        else:
            report["killed"] += 1
            report["killed_ops"][op["kind"]] += 1
            pending = (state, op)
            if op["kind"] in took and slept > took[op["kind"]]:  # killed after it should have ended: it takes longer
                took[op["kind"]] *= 1.3
        if "error" in rest:
            report["failures"].append({"round": round_no, "why": f"writer failed: {rest.strip()}"})
    report["seconds"] = round(time.monotonic() - start, 1)
    report["final"] = state
    report["stores"] = _check_stores(assistant)  # every child has ended: the parent opens the memory now
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args[3] if len(args) > 3 else "store"
    faces = Path(args[4]) if len(args) > 4 else None
    print(json.dumps(main(Path(args[0]), int(args[1]), int(args[2]), mode, faces)))
