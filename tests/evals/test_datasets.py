"""The documented formats: the shipped samples load cleanly, bad records are reported as file:line and
skipped, and the sample's face boxes are what the real dlib detector finds on the stored photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rcmu_agent.evals.datasets import load_rcmu, load_rcpbench, load_yollava
from rcmu_agent.faces import FaceDetector
from rcmu_agent.images import load_image
from rcmu_agent.schema import Box


@pytest.mark.unit
def test_samples_load_with_every_kind(samples: Path) -> None:
    rcmu = load_rcmu(samples / "rcmu" / "test.jsonl")
    assert not rcmu.problems
    assert {i.kind for i in rcmu.items} == {"V2C", "C2V", "UA-V2C", "UA-C2V", "RCID"}
    assert all(i.image_path is not None and i.image_path.is_file() for i in rcmu.items)
    bench = load_rcpbench(samples / "rcpbench")
    assert not bench.problems and len(bench.gallery) == 5 and len(bench.questions) >= 8
    assert {q.kind for q in bench.questions} == {"V2C", "C2V"}
    assert all(q.not_enough_letter is not None for q in bench.questions)
    yollava = load_yollava(samples / "yollava")
    assert not yollava.problems
    assert {q.kind for q in yollava.questions} == {"visual", "text"}
    assert all("sks" not in q.question for q in yollava.questions)  # the concept's name stands in


@pytest.mark.unit
def test_malformed_lines_and_missing_images_are_reported_and_skipped(samples: Path, tmp_path: Path) -> None:
    lines = (samples / "rcmu" / "test.jsonl").read_text().splitlines()
    good = json.loads(lines[0])
    good["image"] = str((samples / "rcmu" / good["image"]).resolve())  # absolute paths work too
    rows = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "no-answer", "answer": None}),
        json.dumps({**good, "id": "bad-kind", "kind": "V2X"}),
        json.dumps({**good, "id": "gone", "image": "nowhere/missing.jpg"}),
        json.dumps(good),  # duplicate id
        "[1, 2]",
    ]
    data = tmp_path / "test.jsonl"
    data.write_text("\n".join(rows) + "\n")
    loaded = load_rcmu(data)
    assert [i.id for i in loaded.items] == [good["id"]]
    where = [p.where for p in loaded.problems]
    assert where == [f"{data}:{n}" for n in (2, 3, 4, 5, 6, 7)]
    reasons = " | ".join(str(p) for p in loaded.problems)
    assert "not JSON" in reasons and "reference answer" in reasons and "kind" in reasons
    assert "missing.jpg does not exist" in reasons and "duplicate id" in reasons


@pytest.mark.unit
def test_rcpbench_and_yollava_bad_records(samples: Path, tmp_path: Path) -> None:
    folder = tmp_path / "rcp"
    shutil.copytree(samples / "rcpbench", folder)
    shutil.copytree(samples / "images", tmp_path / "images")
    questions = (folder / "questions.jsonl").read_text().splitlines()
    broken = json.loads(questions[0])
    broken["answer"] = "Z"
    stranger = json.loads(questions[1])
    stranger["entities"][0]["entity"] = "nobody"
    (folder / "questions.jsonl").write_text("\n".join([*questions, json.dumps(broken), json.dumps(stranger)]) + "\n")
    bench = load_rcpbench(folder / "questions.jsonl")
    assert len(bench.questions) == len(questions)
    assert [p.where.rsplit(":", 1)[1] for p in bench.problems] == [str(len(questions) + 1), str(len(questions) + 2)]

    yfolder = tmp_path / "yollava"
    shutil.copytree(samples / "yollava", yfolder)
    visual = json.loads((yfolder / "yollava-visual-qa.json").read_text())
    visual["obama"]["../images/none.jpg"] = {"question": "?", "options": {"A": "x", "B": "y"}, "correct_answer": "A"}
    visual["obama"]["../images/obama1.jpg"]["correct_answer"] = "C"
    (yfolder / "yollava-visual-qa.json").write_text(json.dumps(visual))
    loaded = load_yollava(yfolder)
    assert len(loaded.questions) == len(load_yollava(samples / "yollava").questions) - 1
    assert sorted(p.where.rsplit("/", 1)[-1] for p in loaded.problems) == ["none.jpg", "obama1.jpg"]


def _iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.integration
def test_sample_face_boxes_are_dlib_detections(samples: Path) -> None:
    detector = FaceDetector()
    bench = load_rcpbench(samples / "rcpbench")
    rcmu = load_rcmu(samples / "rcmu" / "test.jsonl")
    boxes: dict[Path, list[Box]] = {}
    for q in bench.questions:
        assert q.image_path is not None
        boxes.setdefault(q.image_path, []).extend(e.box for e in q.entities)
    for item in rcmu.items:
        assert item.image_path is not None
        boxes.setdefault(item.image_path, []).extend(r.box for r in item.regions if r.category == "person")
    assert len([p for p, b in boxes.items() if b]) >= 4
    for path, stored in boxes.items():
        found = [r.box for r in detector.detect(load_image(path))]
        for box in stored:
            assert max(_iou(box, f) for f in found) > 0.95, (path.name, box)
