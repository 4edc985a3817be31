"""No message names another user: a stranger (carol, who taught nothing) drives every `rcmu` command
that takes `--user` on a home where alice and bob have memories, and learns neither their ids nor
their people. A user with no memory is an empty memory, for `export` too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rcmu_agent import Assistant
from rcmu_agent.cli import app

pytestmark = pytest.mark.integration  # dlib, MiniLM and Chroma through the CLI

PRIVATE = ("alice", "bob", "Barack", "Obama", "Biden", "uncle", "known users")


def _rcmu(home: Path, *args: str) -> tuple[int, str]:
    env = {"RCMU_HOME": str(home), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": "", "RCMU_USER": ""}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def test_a_stranger_exports_an_empty_memory_that_names_nobody(assistant: Assistant, tmp_path: Path) -> None:
    home = assistant.settings.home
    code, output = _rcmu(home, "export", str(tmp_path / "carol"), "--user", "carol")
    assert code == 0, output
    assert "exported 0 entit(ies) of carol (0)" in output
    manifest = json.loads((tmp_path / "carol" / "manifest.json").read_text())
    assert manifest["users"] == {"carol": 0} and manifest["format"] == "rcmu-memory"
    assert (tmp_path / "carol" / "entities.jsonl").read_text() == ""
    assert not (tmp_path / "carol" / "photos").exists()
    blob = output + "".join(p.read_text() for p in (tmp_path / "carol").iterdir())
    for private in PRIVATE:
        assert private not in blob, private
    # a valid export: it imports (nothing) into a fresh home
    code, output = _rcmu(tmp_path / "fresh", "import", str(tmp_path / "carol"), "--user", "dave", "--workers", "0")
    assert code == 0, output
    assert _rcmu(tmp_path / "fresh", "list", "--user", "dave", "--json")[1].strip() == "[]"


def test_no_command_names_another_user_to_a_stranger(assistant: Assistant, tmp_path: Path, faces_dir: Path) -> None:
    home = assistant.settings.home
    scene = tmp_path / "scene.jpg"
    shutil.copy(faces_dir / "scenes" / "two_people.jpg", scene)
    assistant.export_memory(tmp_path / "everyone", all_users=True)  # alice's and bob's, as an admin would
    alices = tmp_path / "alices"
    alices.mkdir()
    shutil.copy(faces_dir / "scenes" / "obama1.jpg", alices / "obama.jpg")
    assert assistant.index_library(alices, user="alice").photos == 1  # her library knows Barack Obama
    runs = {
        "list": ("list", "--user", "carol"),
        "ask": ("ask", str(scene), "Who is here?", "--context-only", "--user", "carol"),
        "forget": ("forget", "Barack Obama", "--user", "carol"),
        "people": ("people", "--user", "carol"),
        "search": ("search", "--person", "Barack Obama", "--user", "carol"),
        "import-two": ("import", str(tmp_path / "everyone"), "--user", "carol", "--workers", "0"),
        "import-from": ("import", str(tmp_path / "everyone"), "--from-user", "dave", "--user", "carol"),
    }
    outputs = {label: _rcmu(home, *args) for label, args in runs.items()}
    assert outputs["list"][0] == 0 and outputs["ask"][0] == 0, outputs  # an empty memory, not an error
    assert outputs["search"][0] == 2 and "(known: nobody yet)" in outputs["search"][1]  # carol's people only
    assert outputs["forget"][0] == 2 and "user 'carol' has no entity 'Barack Obama'" in outputs["forget"][1]
    assert outputs["import-two"][0] == 2 and "the export holds 2 users" in outputs["import-two"][1]
    assert "manifest.json" in outputs["import-two"][1]
    assert outputs["import-from"][0] == 2 and "no entity of user 'dave'" in outputs["import-from"][1]
    for label, (_, output) in outputs.items():
        leaked = [p for p in PRIVATE if p in output.replace("'Barack Obama'", "")]  # carol's own words echo back
        assert not leaked, (label, leaked, output)
    assert [e.name for e in assistant.entities(user="alice")] == ["Barack Obama"]  # carol's forget missed
    assert assistant.entities(user="carol") == []
