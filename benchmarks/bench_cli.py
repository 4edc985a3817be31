"""Start-up of the `rcmu` command line, as a user meets it: fresh processes, wall time.

- `rcmu list` (memory of two people): target <= 1.5 s.
- `rcmu ask two_people.jpg "..." --context-only`: decode, detect, recognise, compose — against a bare
  dlib script that imports dlib, loads the same three models and detects and describes the same
  faces. Target: <= 2.0x.

Best of interleaved rounds (the machine's load hits every command alike).

    python benchmarks/bench_cli.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENE = DATA / "faces" / "scenes" / "two_people.jpg"
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


def rcmu() -> list[str]:
    found = shutil.which("rcmu")
    return [found] if found else [sys.executable, "-m", "rcmu_agent.cli"]


def wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command} failed: {done.stderr[-400:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RCMU_HOME": tmp, "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}
        env.setdefault("HF_HUB_OFFLINE", "1")
        reference = DATA / "faces" / "reference"
        for name, photo in (("Barack Obama", "obama_obama.jpg"), ("Joe Biden", "biden_biden.jpg")):
            wall([*rcmu(), "remember", name, "--photo", str(reference / photo), "--info", "a president"], env)
        commands = {
            "bare dlib script": [sys.executable, "-c", BARE, str(SCENE)],
            "rcmu list": [*rcmu(), "list"],
            "rcmu ask --context-only": [*rcmu(), "ask", str(SCENE), "Who is on the left?", "--context-only"],
        }
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.rounds):
            for label, command in commands.items():
                times[label].append(wall(command, env))
    best = {label: min(values) for label, values in times.items()}
    for label, seconds in best.items():
        print(f"  {label:24s} {seconds:5.2f} s (best of {args.rounds})")
    print(f"  rcmu list: {best['rcmu list']:.2f} s (target <= 1.5 s)")
    ratio = best["rcmu ask --context-only"] / best["bare dlib script"]
    print(f"  rcmu ask --context-only / bare dlib script: ratio {ratio:.2f} (target <= 2.0)")


if __name__ == "__main__":
    main()
