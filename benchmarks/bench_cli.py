"""Start-up of the `rcmu` command line, as a user meets it: fresh processes, wall time.

Each command is measured against the floor of the work it does: a bare script, run in the same round,
that imports what the work needs, loads the models it uses and does the work itself, and nothing else
(no settings, CLI, checks, locks or journal). Target for each: command <= 2.0x its floor (issue 22).

- `rcmu list` (memory of two people): target <= 1.5 s (no floor: it loads no model).
- `rcmu ask two_people.jpg "..." --context-only`: decode, detect, recognise, compose — against bare
  dlib: import dlib, load the same three models, detect and describe the same faces.
- `rcmu remember NAME --photo P --info I` (one photo, into the memory of two people): against dlib's
  three models describing the largest face, MiniLM embedding "NAME. INFO", and Chroma storing both.
- `rcmu search --text beach` (a library of the three shared scenes): against MiniLM embedding the
  query, Chroma reading the library's text vectors and one matrix-vector product ranking them.
- `rcmu import kb.jsonl` (4 people, one photo each, into a new home; default workers): against the
  `remember` floor with the 4 photos and texts (one dlib load, one MiniLM load, one Chroma write).
  Workers start only when there is enough work for them, so this one should start none.

The floors' Chroma is the store the work reads and writes (importing chromadb is ~1 s of each on a busy
2-core machine); the MiniLM they load is `rcmu_agent.memory.text_embedder` (numpy, from the installed
model folder), as the dlib floor takes the model paths from `rcmu_agent.faces`.

Best of interleaved rounds (the machine's load hits every command and its floor alike); CPU time
(user + system of the process and its children) is printed beside wall time.

    python benchmarks/bench_cli.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENES = DATA / "faces" / "scenes"
SCENE = SCENES / "two_people.jpg"
REFERENCE = DATA / "faces" / "reference"
KB = [  # name, info, reference photo
    ("Barack Obama", "44th president", "obama_obama.jpg"),
    ("Joe Biden", "46th president", "biden_biden2.jpg"),
    ("Kit Harington", "plays Jon Snow", "kit_harington_john1.jpeg"),
    ("Rose Leslie", "plays Ygritte", "rose_leslie_img2.jpg"),
]
TARGET = 2.0

BARE = """
import sys
import dlib
import numpy as np
from PIL import Image
from rcmu_agent.faces import FACE_DESCRIPTOR_MODEL, model_file

array = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
hog = dlib.get_frontal_face_detector()
aligner = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
resnet = dlib.face_recognition_model_v1(str(model_file(f"{FACE_DESCRIPTOR_MODEL}.dat")))
shapes = dlib.full_object_detections()
for rect in hog(array, 1):
    shapes.append(aligner(array, rect))
print(len(resnet.compute_face_descriptor(array, shapes)), "faces")
"""

# argv: a Chroma folder, then name, info, photo for each entity. The largest face of each photo (HOG with
# one upsampling, as rcmu does below 2000 px), its descriptor, "name. info" embedded, both stored.
FLOOR_TEACH = """
import sys
import chromadb
import dlib
import numpy as np
from PIL import Image, ImageOps
from rcmu_agent.faces import FACE_DESCRIPTOR_MODEL, model_file
from rcmu_agent.memory.text_embedder import TextEmbedder

folder, rest = sys.argv[1], sys.argv[2:]
people = [rest[i : i + 3] for i in range(0, len(rest), 3)]
hog = dlib.get_frontal_face_detector()
aligner = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
resnet = dlib.face_recognition_model_v1(str(model_file(f"{FACE_DESCRIPTOR_MODEL}.dat")))
faces = []
for _, _, photo in people:
    with Image.open(photo) as image:
        array = np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))
    rects, _, _ = hog.run(array, 1, 0.0)
    largest = max(rects, key=lambda r: r.area())
    shapes = dlib.full_object_detections()
    shapes.append(aligner(array, largest))
    faces.append(list(resnet.compute_face_descriptor(array, shapes)[0]))
texts = TextEmbedder().embed([f"{name}. {info}" for name, info, _ in people])
client = chromadb.PersistentClient(path=folder, settings=chromadb.Settings(anonymized_telemetry=False))
ids = [name for name, _, _ in people]
client.get_or_create_collection("faces", embedding_function=None).upsert(ids=ids, embeddings=faces)
client.get_or_create_collection("entities", embedding_function=None).upsert(
    ids=ids, embeddings=texts.tolist(), documents=[info for _, info, _ in people]
)
print(len(ids), "stored")
"""

# argv: the home's Chroma folder, the query. The library's text vectors ranked by cosine to the query.
FLOOR_SEARCH = """
import sys
import chromadb
import numpy as np
from rcmu_agent.memory.text_embedder import TextEmbedder

client = chromadb.PersistentClient(path=sys.argv[1], settings=chromadb.Settings(anonymized_telemetry=False))
got = client.get_collection("library_text").get(where={"user": "default"}, include=["embeddings", "metadatas"])
query = TextEmbedder().embed([sys.argv[2]])[0]
scores = np.asarray(got["embeddings"], dtype=np.float32) @ query
print([got["metadatas"][i]["photo_id"] for i in np.argsort(-scores)[:10]])
"""


def rcmu() -> list[str]:
    found = shutil.which("rcmu")
    return [found] if found else [sys.executable, "-m", "rcmu_agent.cli"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process (CPU includes the workers it waits for)."""
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command} failed: {done.stderr[-800:]}")
    return seconds, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        env = {**os.environ, "RCMU_HOME": str(home), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("ANONYMIZED_TELEMETRY", "False")
        for name, photo in (("Barack Obama", "obama_obama.jpg"), ("Joe Biden", "biden_biden.jpg")):
            timed([*rcmu(), "remember", name, "--photo", str(REFERENCE / photo), "--info", "a president"], env)
        timed([*rcmu(), "index", str(SCENES)], env)
        kb = root / "kb" / "kb.jsonl"  # a knowledge base names photos inside its folder
        (kb.parent / "photos").mkdir(parents=True)
        for _, _, photo in KB:
            shutil.copyfile(REFERENCE / photo, kb.parent / "photos" / photo)
        kb.write_text("".join(json.dumps({"name": n, "info": i, "photos": [f"photos/{p}"]}) + "\n" for n, i, p in KB))
        teach = [str(x) for name, info, photo in KB for x in (name, info, kb.parent / "photos" / photo)]
        kit = KB[2]
        times: dict[str, list[tuple[float, float]]] = {}
        for round_ in range(args.rounds):
            fresh = root / f"import-{round_}"  # a new home for the import and for its floor, every round
            commands = {
                "bare dlib script": [sys.executable, "-c", BARE, str(SCENE)],
                "rcmu ask --context-only": [*rcmu(), "ask", str(SCENE), "Who is on the left?", "--context-only"],
                "rcmu list": [*rcmu(), "list"],
                "floor remember": [
                    sys.executable, "-c", FLOOR_TEACH, str(root / "floor-remember"), kit[0], kit[1],
                    str(REFERENCE / kit[2]),
                ],
                "rcmu remember": [*rcmu(), "remember", kit[0], "--photo", str(REFERENCE / kit[2]), "--info", kit[1]],
                "floor search": [sys.executable, "-c", FLOOR_SEARCH, str(home / "chroma"), "beach"],
                "rcmu search --text": [*rcmu(), "search", "--text", "beach"],
                "floor import": [sys.executable, "-c", FLOOR_TEACH, str(fresh / "floor"), *teach],
                "rcmu import (4 rows)": [*rcmu(), "--home", str(fresh / "home"), "import", str(kb)],
            }  # fmt: skip
            for label, command in commands.items():
                times.setdefault(label, []).append(timed(command, env))
    best = {label: min(values) for label, values in times.items()}
    for label, (seconds, cpu) in best.items():
        print(f"  {label:24s} {seconds:5.2f} s wall  {cpu:5.2f} s cpu  (best of {args.rounds})")
    print(f"  rcmu list: {best['rcmu list'][0]:.2f} s (target <= 1.5 s)")
    for command, floor in (
        ("rcmu ask --context-only", "bare dlib script"),
        ("rcmu remember", "floor remember"),
        ("rcmu search --text", "floor search"),
        ("rcmu import (4 rows)", "floor import"),
    ):
        ratio, cpu = best[command][0] / best[floor][0], best[command][1] / best[floor][1]
        verdict = "ok" if ratio <= TARGET else "OVER"
        print(f"  {command} / {floor}: ratio {ratio:.2f} (cpu {cpu:.2f}) target <= {TARGET:.1f}: {verdict}")


if __name__ == "__main__":
    main()
