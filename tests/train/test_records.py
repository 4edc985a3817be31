"""Instruction records, `rcmu data validate`, source loaders and the pipeline's bad-input paths."""

from __future__ import annotations

import errno
import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rcmu_agent.cli import app
from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.jsonl import BadLine, JsonlWriter
from rcmu_agent.train.records import InstructionRecord, record_prompt
from rcmu_agent.train.sources import SourceRecord, load_refcoco, load_sources

runner = CliRunner()


def _good(cat: Path) -> dict[str, Any]:
    """A good record about `cat`, a 451x300 photo of a cat."""
    return {
        "id": "r1",
        "image": str(cat),
        "image_size": [451, 300],
        "regions": [
            {"box": [60, 20, 420, 300], "category": "cat", "info": "Chelsea, 4, naps all day", "name": "Chelsea"}
        ],
        "kind": "V2C",
        "question": "What does the tabby cat do all day?",
        "answer": "She naps all day [1].",
        "citations": [1],
    }


@pytest.mark.unit
def test_validate_reports_each_bad_record_with_its_line(small_photos: Path, tmp_path: Path) -> None:
    good = _good(small_photos / "chelsea.jpg")
    variants = [
        good,
        {**good, "id": "r2", "regions": [{**good["regions"][0], "box": [60, 20, 900, 300]}]},
        {**good, "id": "r3", "citations": [2]},
        {**good, "id": "r4", "question": "  "},
        {**good, "id": "r5", "kind": "VQA"},
        {**good, "id": "r6", "image": str(tmp_path / "gone.jpg")},
        {**good, "id": "r7", "regions": [{**good["regions"][0], "info": " . "}]},
        {**good, "id": "r8", "image_size": [640, 480]},
        {**good, "id": "r9", "answer": "She naps [3]."},
        {**good, "id": "r10", "kind": "UA-V2C"},
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in variants) + "{not json\n")
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    expected = {
        2: "lies outside the 451x300 image",
        3: "citation [2] has no context entry",
        4: "empty question",
        5: "unknown kind 'VQA'",
        6: "missing image",
        7: "empty info",
        8: "image_size [640, 480] but the image is 451x300",
        9: "answer cites [3]",
        10: "unanswerable record must not cite",
        11: "not JSON",
    }
    for number, reason in expected.items():
        assert any(line.startswith(f"{path}:{number}: ") and reason in line for line in lines), (number, lines)
    assert lines[-1] == "1 good, 10 bad record(s)"
    path.write_text(json.dumps(good) + "\n")
    ok = runner.invoke(app, ["data", "validate", str(path)])
    assert ok.exit_code == 0 and "1 good, 0 bad" in ok.output


@pytest.mark.integration
def test_record_prompt_is_the_agents_prompt(shared_data: Path, rcmu_home: Path) -> None:
    from rcmu_agent.assistant import Assistant
    from rcmu_agent.schema import Region
    from rcmu_agent.settings import Settings

    record = InstructionRecord.model_validate(_good(shared_data / "objects" / "chelsea.png"))
    settings = Settings(home=rcmu_home, object_detector="", image_embedding_model="")
    regions = [Region(box=r.box, category=r.category, info=r.info) for r in record.regions]
    answer = Assistant(settings).ask(record.question, record.image, regions=regions, context_only=True)
    assert answer.prompt == record_prompt(record)
    assert "[1]: The information of the cat located at <|box_start|>(133,66),(931,999)<|box_end|>" in answer.prompt


def _refer_files(tmp: Path) -> tuple[Path, Path]:
    refs = [
        {"ref_id": 1, "ann_id": 10, "image_id": 7, "split": "train", "category_id": 17,
         "sentences": [{"sent": "cat on the left", "raw": "Cat on the left"}, {"sent": "the  sleepy cat"}]},
        {"ref_id": 2, "ann_id": 11, "image_id": 7, "split": "val", "category_id": 47,
         "sentences": [{"sent": "white cup"}]},
    ]  # fmt: skip
    instances = {
        "images": [{"id": 7, "file_name": "COCO_train2014_000000000007.jpg", "width": 640, "height": 480}],
        "annotations": [
            {"id": 10, "image_id": 7, "bbox": [10, 20, 100, 50], "category_id": 17},
            {"id": 11, "image_id": 7, "bbox": [300, 200, 40, 40], "category_id": 47},
        ],
        "categories": [{"id": 17, "name": "cat"}, {"id": 47, "name": "cup"}],
    }
    (tmp / "refs(umd).p").write_bytes(pickle.dumps(refs, protocol=2))
    (tmp / "refs.json").write_text(json.dumps(refs))
    (tmp / "instances.json").write_text(json.dumps(instances))
    return tmp / "refs(umd).p", tmp / "refs.json"


@pytest.mark.unit
def test_refcoco_layout_loads_from_pickle_and_json(tmp_path: Path) -> None:
    pickled, exported = _refer_files(tmp_path)
    for path in (pickled, exported):
        (record,) = load_refcoco(path, images=Path("/coco/train2014"))
        assert record.id == "coco-7" and record.image == "/coco/train2014/COCO_train2014_000000000007.jpg"
        cat, cup = record.objects
        assert cat.box == (10, 20, 110, 70) and cat.category == "cat"
        assert cat.expressions == ["cat on the left", "the sleepy cat"]
        assert cup.box == (300, 200, 340, 240) and cup.expressions == ["white cup"]
    (train_only,) = load_refcoco(pickled, split="train")
    assert [o.category for o in train_only.objects] == ["cat"]


@pytest.mark.unit
def test_unreadable_annotation_files_are_reported(tmp_path: Path) -> None:
    pickled, _ = _refer_files(tmp_path)
    garbage = tmp_path / "garbage.p"
    garbage.write_bytes(b"\x00\x01not a pickle")
    with pytest.raises(InvalidInputError, match="cannot read annotation file"):
        list(load_refcoco(garbage, instances=tmp_path / "instances.json"))
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps(shutil.rmtree))  # a pickle that would import and call code
    with pytest.raises(InvalidInputError, match="refusing to load"):
        list(load_refcoco(evil, instances=tmp_path / "instances.json"))
    (tmp_path / "instances.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="cannot read COCO instances"):
        list(load_refcoco(pickled))
    with pytest.raises(NotFoundError):
        load_sources(tmp_path / "nothing.jsonl", [])
    result = runner.invoke(app, ["data", "build", str(garbage), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "cannot read annotation file" in result.output


@pytest.mark.unit
def test_jsonl_sources_skip_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "sources.jsonl"
    ok = {"id": "a", "image": "a.jpg", "objects": [{"box": [0, 0, 5, 5], "category": "Dog", "expressions": ["x"]}]}
    path.write_text(json.dumps(ok) + "\n" + json.dumps({"id": "b", "image": "b.jpg"}) + "\n")
    bad: list[BadLine] = []
    (record,) = load_sources(path, bad, images=tmp_path)
    assert record.image == str(tmp_path / "a.jpg") and record.objects[0].category == "dog"
    assert [(b.line, b.reason) for b in bad] == [(2, "objects: Field required")]


@pytest.mark.integration
def test_full_disk_stops_cleanly_and_the_rerun_finishes(
    built: Any, source_records: list[SourceRecord], rebuild: Callable[..., Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from rcmu_agent.train import data

    copy = tmp_path / "disk"
    shutil.copytree(built.out, copy)
    for name in ("05_score", "06_dedup", "07_substitute", "08_describe"):
        (copy / f"{name}.jsonl").unlink()
    writes = {"n": 0}

    class FullDisk(JsonlWriter):
        def write(self, record: Any) -> None:
            if self.path.name == "05_score.jsonl":
                writes["n"] += 1
                if writes["n"] > 3:
                    raise OSError(errno.ENOSPC, "No space left on device")
            super().write(record)

    monkeypatch.setattr(data, "JsonlWriter", FullDisk)
    with pytest.raises(data.DiskFullError, match=r"05_score.jsonl.*every record written before is kept"):
        rebuild(source_records, copy)
    assert len((copy / "05_score.jsonl").read_text().splitlines()) == 3
    monkeypatch.setattr(data, "JsonlWriter", JsonlWriter)
    again = rebuild(source_records, copy)
    assert again.result.stages["05_score"].done_before == 3
    assert (copy / "05_score.jsonl").read_bytes() == (built.out / "05_score.jsonl").read_bytes()
    assert (copy / "rcmu.jsonl").read_bytes() == (built.out / "rcmu.jsonl").read_bytes()
