"""`rcmu data validate` on every dataset format of the project (issue 22: the project's own RCMU sample
read "0 good, 18 bad" because it was checked as training records)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rcmu_agent.cli import app

pytestmark = pytest.mark.unit  # reads the samples' JSON and image headers only

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parents[2] / "evals" / "samples"
FORMATS = "train|rcmu|rcpbench|yollava"


def validate(*args: str) -> Result:
    return runner.invoke(app, ["data", "validate", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("given", "summary"),
    [
        ("rcmu/test.jsonl", "18 good, 0 bad item(s) in an RCMU test set"),
        ("rcpbench", "14 good, 0 bad item(s) in an RC&P-Bench set"),  # 5 gallery entities, 9 questions
        ("rcpbench/questions.jsonl", "14 good, 0 bad item(s) in an RC&P-Bench set"),
        ("yollava", "11 good, 0 bad item(s) in a Yo'LLaVA set"),  # 5 concepts, 6 questions
    ],
)
def test_the_projects_own_samples_validate(given: str, summary: str) -> None:
    result = validate(str(SAMPLES / given))
    assert result.exit_code == 0, result.output
    assert result.stdout == summary + "\n" and result.stderr == ""


def _item(**changes: Any) -> str:
    item = {
        "id": "rcmu-x",
        "image": str(SAMPLES / "images" / "chelsea.jpg"),
        "kind": "V2C",
        "question": "What does the cat do all day?",
        "answer": "She naps all day [1].",
        "regions": [{"box": [60, 20, 400, 280], "category": "cat", "info": "Chelsea naps all day"}],
    }
    return json.dumps({**item, **changes})


def test_an_rcmu_test_set_is_checked_as_the_eval_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Image paths relative to the file (not the working folder), and the training checks that apply."""
    (tmp_path / "pics").mkdir()
    shutil.copy(SAMPLES / "images" / "chelsea.jpg", tmp_path / "pics" / "cat.jpg")
    region = {"box": [60, 20, 4000, 280], "category": "cat", "info": "Chelsea naps all day"}
    lines = [
        _item(image="pics/cat.jpg"),
        _item(id="far", regions=[region]),
        _item(id="cites", answer="She naps [2]."),
        _item(id="gone", image="pics/gone.jpg"),
        _item(id="rcid", kind="RCID", question="Describe the image.", answer=None),  # no reference: allowed
        _item(id="rcmu-x"),
    ]
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(SAMPLES)  # elsewhere: pics/cat.jpg resolves from the file's folder
    result = validate(str(path))
    assert result.exit_code == 1
    width, height = 451, 300
    assert result.stdout.splitlines() == [
        f"{path}:2: region 1: box [60.0, 20.0, 4000.0, 280.0] lies outside the {width}x{height} image",
        f"{path}:3: answer cites [2] but there is no entry 2",
        f"{path}:4: image {tmp_path / 'pics' / 'gone.jpg'} does not exist",
        f"{path}:6: duplicate id 'rcmu-x'",
        "2 good, 4 bad item(s) in an RCMU test set",
    ]


def test_format_is_the_users_choice_and_a_wrong_guess_says_how_to_choose(tmp_path: Path) -> None:
    as_training = validate("--format", "train", str(SAMPLES / "rcmu" / "test.jsonl"))
    assert as_training.exit_code == 1
    assert as_training.stdout.splitlines()[-1] == "0 good, 18 bad record(s)"
    assert "image_size: Field required" in as_training.stdout and as_training.stderr == ""
    other = tmp_path / "sources.jsonl"  # `rcmu data build` input: no image_size, so not training records
    other.write_text(json.dumps({"image": "x.jpg", "boxes": [[0, 0, 1, 1]]}) + "\n")
    guessed = validate(str(other))
    assert guessed.exit_code == 1
    assert guessed.stdout.splitlines()[-1] == "0 good, 1 bad item(s) in an RCMU test set"
    assert guessed.stderr == f"checked as an RCMU test set; if it is not, give --format {FORMATS}\n"


def test_nothing_to_check_exits_2_with_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = {
        (str(empty),): f"{empty} holds no records — check that this is the file you meant",
        (str(SAMPLES),): (
            f"{SAMPLES} is a folder with no dataset in it — give a JSONL file, an RC&P-Bench folder "
            "(gallery.jsonl, questions.jsonl) or a Yo'LLaVA folder (database.json)"
        ),
        ("-f", "csv", str(empty)): "unknown format 'csv' — use one of train, rcmu, rcpbench, yollava",
    }
    for args, message in cases.items():
        result = validate(*args)
        assert result.exit_code == 2 and result.stdout == "", args
        assert result.stderr == f"error: {message}\n", args
