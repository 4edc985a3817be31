"""Optional parts (object detector, image embedder) that cannot load offline never block the face path:
one warning line says what was skipped and how to enable it. `rcmu index` that indexed nothing fails."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rcmu_agent import Assistant, Settings
from rcmu_agent.cli import app

pytestmark = pytest.mark.integration  # dlib, MiniLM and Chroma through the CLI

runner = CliRunner()
OFFLINE_HUB_IDS = {  # the defaults: hub ids, unreachable here (HF_HUB_OFFLINE=1)
    "RCMU_OBJECT_DETECTOR": "google/owlv2-base-patch16-ensemble",
    "RCMU_IMAGE_EMBEDDING_MODEL": "openai/clip-vit-base-patch32",
}


def rcmu(home: Path, *args: str) -> object:
    return runner.invoke(app, list(args), env={"RCMU_HOME": str(home), **OFFLINE_HUB_IDS}, catch_exceptions=False)


def test_context_only_works_with_a_dog_in_memory_and_no_detector(
    tmp_path: Path, faces_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    ref, scene = faces_dir / "reference", faces_dir / "scenes" / "two_people.jpg"
    with caplog.at_level(logging.WARNING):
        taught = rcmu(home, "remember", "Barack Obama", "-p", str(ref / "obama_obama.jpg"), "-i", "44th president")
        assert taught.exit_code == 0, taught.output
        dog = rcmu(home, "remember", "Bella", "-p", str(ref / "biden_biden.jpg"), "-i", "our dog", "--category", "dog")
        assert dog.exit_code == 0, dog.output  # kept, though it cannot be recognised by look
        result = rcmu(home, "ask", str(scene), "Who is here?", "--context-only", "--json")
    assert result.exit_code == 0, result.output
    names = [r["name"] for r in json.loads(result.stdout)["regions"]]
    assert "Barack Obama" in names
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "rcmu_agent.recognizer"
    ]
    skipped = [w for w in warnings if "object detection" in w]
    assert skipped and "skipped" in skipped[0] and "RCMU_OBJECT_DETECTOR" in skipped[0] and "\n" not in skipped[0]


def test_index_works_offline_without_the_image_embedder(
    tmp_path: Path, faces_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(faces_dir / "scenes" / "two_people.jpg", photos / "two.jpg")
    settings = Settings(home=tmp_path / "home")  # default (hub) models, unreachable
    with caplog.at_level(logging.WARNING):
        report = Assistant(settings).index_library(photos)
    assert report.added == 1 and report.photos == 1 and not report.skipped and report.faces == 2
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "rcmu_agent.recognizer"
    ]
    skipped = [w for w in warnings if "photo search by look" in w]
    assert len(skipped) == 1, warnings  # said once, not per photo
    line = skipped[0]
    assert line.startswith("object recognition and photo search by look skipped: "), line  # what was skipped
    assert "openai/clip-vit-base-patch32" in line  # which model could not load
    assert "set RCMU_IMAGE_EMBEDDING_MODEL to a local directory holding a CLIP model" in line  # how to enable it
    assert "\n" not in line


def test_index_that_indexed_nothing_exits_non_zero_with_a_fix(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = rcmu(tmp_path / "home", "index", str(empty))
    assert result.exit_code == 2
    assert "no photo was indexed under" in result.stderr and "point `rcmu index` at the folder" in result.stderr
    (empty / "notes.jpg").write_text("not a photo")
    result = rcmu(tmp_path / "home", "index", str(empty))
    assert result.exit_code == 2 and "fix or remove the skipped files" in result.stderr
    assert "skipped" in result.stderr and "notes.jpg" in result.stderr
