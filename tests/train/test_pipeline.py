"""The construction pipeline end to end on the shared photos, against a real loopback HTTP server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.jsonl import BadLine, read_jsonl, read_models
from rcmu_agent.train._work import Work
from rcmu_agent.train.data import STAGES, balance
from rcmu_agent.train.records import UNANSWERABLE, check_record, validate_file
from rcmu_agent.train.sources import SourceRecord


def _stage_files(out: Path) -> dict[str, bytes]:
    return {name: (out / f"{name}.jsonl").read_bytes() for name, _ in STAGES}


@pytest.mark.integration
def test_every_stage_writes_valid_records(built: Any) -> None:
    for name, _ in STAGES:
        bad: list[BadLine] = []
        works = [w for _, w in read_models(built.out / f"{name}.jsonl", Work, bad)]
        assert not bad and len(works) == (8 if name == "01_info" else 6), name  # 9 sources, 3 rejected
        assert all(w.stage == name for w in works)
        for work in works:
            for record in work.instructions:
                assert check_record(record) == [], record
    report = validate_file(built.out / "rcmu.jsonl")
    assert report.ok and report.good == built.result.exported > 0
    kinds = built.result.kinds
    assert set(kinds) == {"V2C", "C2V", "UA-V2C", "UA-C2V", "RCID-cite"}


@pytest.mark.integration
def test_stages_add_what_they_promise(built: Any) -> None:
    by_stage = {name: {w.id: w for _, w in read_models(built.out / f"{name}.jsonl", Work)} for name, _ in STAGES}
    pair = by_stage["01_info"]["two_people"]
    assert [o.category for o in pair.objects] == ["person", "person"]
    assert pair.objects[0].name != pair.objects[1].name and all(o.info for o in pair.objects)
    assert pair.image_size == (pair.image_size[0], pair.image_size[1]) and pair.image_size[0] > 0
    obj = by_stage["02_facts"]["coffee"].objects[0]
    assert obj.info_facts and obj.info_facts[0] in (obj.info or "")  # facts come from the info it was given
    low = "What else is known about it?"
    assert any(q.question == low for q in by_stage["03_qa"]["coffee"].objects[0].contextual_qa)
    assert all(q.question != low for q in by_stage["05_score"]["coffee"].objects[0].contextual_qa)  # below threshold
    assert by_stage["06_dedup"]["chelsea"].objects[0].expressions == ["the tabby cat", "the cat lying down"]
    records = by_stage["07_substitute"]["two_people"].instructions
    v2c = next(r for r in records if r.kind == "V2C" and r.question.startswith("How old"))
    assert "the man on the" in v2c.question and v2c.citations and f"[{v2c.citations[0]}]" in v2c.answer
    rcid = next(r for r in by_stage["08_describe"]["two_people"].instructions if r.kind == "RCID-cite")
    assert sorted(rcid.citations) == [1, 2]


@pytest.mark.integration
def test_bad_sources_are_rejected_and_counted_not_fatal(built: Any) -> None:
    rejected = {row["source_id"]: row for _, row in read_jsonl(built.out / "rejected.jsonl")}
    assert rejected["missing"]["stage"] == "01_info" and "missing image" in rejected["missing"]["reason"]
    assert rejected["broken"]["stage"] == "02_facts" and "off-format" in rejected["broken"]["reason"]
    assert rejected["failing"]["stage"] == "02_facts" and "500" in rejected["failing"]["reason"]
    manifest = json.loads((built.out / "manifest.json").read_text())
    assert manifest["stages"]["01_info"]["rejected"] == 1 and manifest["stages"]["02_facts"]["rejected"] == 2
    assert manifest["llm"]["calls"] > 0 and manifest["llm"]["prompt_tokens"] > 0 and manifest["llm"]["failures"] >= 2


@pytest.mark.integration
def test_rerun_is_free_and_identical(
    built: Any, source_records: list[SourceRecord], tmp_path: Path, rebuild: Callable[..., Any]
) -> None:
    copy = tmp_path / "again"
    shutil.copytree(built.out, copy)
    good = [s for s in source_records if s.id not in {"missing", "broken", "failing"}]
    again = rebuild(good, copy)
    assert again.requests == 0 and again.result.llm["calls"] == 0 and again.result.llm["cached"] == 0
    assert all(c.written == 0 and c.rejected == 0 for c in again.result.stages.values())
    assert _stage_files(copy) == _stage_files(built.out)
    assert (copy / "rcmu.jsonl").read_bytes() == (built.out / "rcmu.jsonl").read_bytes()


@pytest.mark.integration
def test_killed_stage_resumes_from_its_file(
    built: Any, source_records: list[SourceRecord], tmp_path: Path, rebuild: Callable[..., Any]
) -> None:
    copy = tmp_path / "killed"
    shutil.copytree(built.out, copy)
    stage = copy / "03_qa.jsonl"
    lines = stage.read_bytes().splitlines(keepends=True)
    stage.write_bytes(b"".join(lines[:2]) + lines[2][:40])  # two lines done, the third torn mid-write
    for name, _ in STAGES[3:]:
        (copy / f"{name}.jsonl").unlink()
    again = rebuild(source_records, copy)
    assert again.result.stages["03_qa"].done_before == 2 and again.result.stages["03_qa"].written == 4
    assert again.requests == 3 + 2  # only the two bad sources ask again (3 re-asks, 1 retry); the rest is cached
    assert _stage_files(copy) == _stage_files(built.out)


@pytest.mark.integration
def test_answerable_unanswerable_ratio_is_a_setting(
    built: Any, source_records: list[SourceRecord], tmp_path: Path, rebuild: Callable[..., Any]
) -> None:
    kinds = built.result.kinds
    answerable = kinds["V2C"] + kinds["C2V"]
    assert answerable == kinds["UA-V2C"] + kinds["UA-C2V"]  # the default 1:1
    copy = tmp_path / "two-to-one"
    shutil.copytree(built.out, copy)
    two = rebuild(source_records, copy, ua_ratio=(2, 1))
    ua = two.result.kinds["UA-V2C"] + two.result.kinds["UA-C2V"]
    assert two.result.kinds["V2C"] + two.result.kinds["C2V"] == 2 * ua and ua > 0
    assert two.requests == 3 + 2  # only the two bad sources ask again: the stages are done, the export changed


@pytest.mark.integration
def test_balance_trims_answerable_when_unanswerable_is_scarce(built: Any) -> None:
    records = [r for _, w in read_models(built.out / "07_substitute.jsonl", Work) for r in w.instructions]
    scarce = [r for r in records if r.kind not in UNANSWERABLE] + [r for r in records if r.kind in UNANSWERABLE][:1]
    kept = balance(scarce, (1, 1), seed=0)
    assert sum(r.kind in UNANSWERABLE for r in kept) == 1 and sum(r.kind in ("V2C", "C2V") for r in kept) == 1


@pytest.mark.integration
def test_no_citation_export_strips_every_citation(
    built: Any, source_records: list[SourceRecord], tmp_path: Path, rebuild: Callable[..., Any]
) -> None:
    copy = tmp_path / "plain"
    shutil.copytree(built.out, copy)
    plain = rebuild(source_records, copy, citations=False)
    rows = [row for _, row in read_jsonl(copy / "rcmu.jsonl")]
    assert "RCID" in plain.result.kinds and "RCID-cite" not in plain.result.kinds
    assert all(not row["citations"] and "[" not in row["answer"] for row in rows)


@pytest.mark.integration
def test_dedup_drops_near_duplicate_generated_expressions(tmp_path: Path) -> None:
    import asyncio

    from rcmu_agent.train._stages import BuildConfig, StageContext, dedup
    from rcmu_agent.train._work import WorkObject

    a = WorkObject(
        box=(0, 0, 10, 10),
        category="person",
        expressions=["the man on the left"],
        context_expressions=["the person who plays chess every Sunday", "the person who lives in Oslo"],
    )
    b = WorkObject(
        box=(20, 0, 30, 10),
        category="person",
        expressions=["the man on the right"],
        context_expressions=["the person who plays chess each Sunday", "the person who bakes bread"],
    )
    work = Work(id="w", image="x.jpg", objects=[a, b])
    ctx = StageContext(llm=None, config=BuildConfig(out=tmp_path))
    out = asyncio.run(dedup(work, ctx))
    assert out.objects[0].context_expressions == ["the person who lives in Oslo"]
    assert out.objects[1].context_expressions == ["the person who bakes bread"]
    assert out.objects[0].expressions == ["the man on the left"]  # human-written, kept
    assert out.objects[1].expressions == ["the man on the right"]


@pytest.mark.unit
def test_ratio_flag_rejects_nonsense() -> None:
    from rcmu_agent.train.cli import _ratio

    assert _ratio("3:1") == (3, 1)
    with pytest.raises(InvalidInputError, match="not A:B"):
        _ratio("half")
