"""`rcmu index` with worker processes: the same index, row for row, as one process — duplicates in
flight, a corrupt file failing inside a worker, recognition and clusters included."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _library_helpers import copy, mirrored, settings

from rcmu_agent import Assistant
from rcmu_agent.memory.library.workers import worker_count

pytestmark = pytest.mark.integration  # index worker processes


def build(root: Path, faces_dir: Path) -> None:
    ref, scenes = faces_dir / "reference", faces_dir / "scenes"
    copy(scenes / "two_people.jpg", root / "a" / "two_people.jpg")
    copy(scenes / "two_people.jpg", root / "b" / "same bytes.jpg")  # duplicate content while the first is in flight
    mirrored(scenes / "two_people.jpg", root / "a" / "mirror.jpg")
    copy(scenes / "obama1.jpg", root / "obama1.jpg")
    copy(ref / "kit_harington_john1.jpeg", root / "c" / "kit_1.jpeg")
    copy(ref / "kit_harington_john2.jpeg", root / "c" / "kit_2.jpeg")
    data = (scenes / "alex_lacamoire1.jpg").read_bytes()
    (root / "c" / "truncated.jpg").write_bytes(data[: len(data) // 3])


def snapshot(assistant: Assistant) -> dict[str, Any]:
    db = assistant.library.store.db
    photos = db.rows("SELECT id, width, height, taken_at, rel, context, embedded FROM photos ORDER BY id")
    regions = db.rows(
        "SELECT photo_id, x1, y1, x2, y2, category, name, cluster_id, descriptor FROM regions ORDER BY photo_id, x1"
    )
    paths = db.rows("SELECT rel, photo_id FROM paths ORDER BY rel")
    bad = db.rows("SELECT rel, reason FROM bad_files ORDER BY rel")
    return {name: [tuple(r) for r in rows] for name, rows in
            {"photos": photos, "regions": regions, "paths": paths, "bad": bad}.items()}  # fmt: skip


def index(tmp_path: Path, root: Path, faces_dir: Path, workers: int) -> tuple[Any, dict[str, Any], Assistant]:
    assistant = Assistant(settings(tmp_path / f"home-{workers}"))
    assistant.remember("Obama", info="44th president", photos=[faces_dir / "reference" / "obama_obama.jpg"])
    real = assistant.parts.recognizer.face_detector
    calls: list[Any] = []
    assistant.parts.recognizer.__dict__["face_detector"] = SimpleNamespace(
        detect=lambda image: calls.append(1) or real.detect(image)
    )
    report = assistant.library.indexer.index(root, user="default", workers=workers)
    assistant.detections_here = len(calls)  # type: ignore[attr-defined]
    return report, snapshot(assistant), assistant


def test_workers_build_the_same_index_as_one_process(tmp_path: Path, faces_dir: Path) -> None:
    root = tmp_path / "photos"
    build(root, faces_dir)
    alone, one, first = index(tmp_path, root, faces_dir, 1)
    pooled, two, second = index(tmp_path, root, faces_dir, 2)
    assert first.detections_here == 5  # type: ignore[attr-defined]
    assert second.detections_here == 0  # type: ignore[attr-defined]  # every photo was detected in a worker
    assert (pooled.added, pooled.duplicates, pooled.faces) == (alone.added, alone.duplicates, alone.faces)
    assert (pooled.added, pooled.duplicates) == (5, 1)
    assert [s.reason for s in pooled.skipped] == [s.reason for s in alone.skipped]
    assert len(pooled.skipped) == 1 and "truncated.jpg" in pooled.skipped[0].reason  # raised in a worker
    assert two == one
    names = {r[6] for r in two["regions"]}
    assert "Obama" in names and None in names  # recognised in this process, unknowns clustered
    assert all(r[7] is not None for r in two["regions"] if r[6] is None)


def test_worker_count_defaults_to_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    assert worker_count(0) == (os.cpu_count() or 1)
    assert worker_count(3) == 3
    monkeypatch.setenv("RCMU_LIBRARY_WORKERS", "2")
    assert settings(Path("/nonexistent")).library_workers == 2
