"""The CLI never rewrites what a user or a model wrote (issue 22): Rich markup (`[bold]`, `[/]`) and
emoji codes (`:cat:`) in names, info, regions and error text come out byte for byte, and
`--context-only` prints exactly the prompt the model receives, at any terminal width."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rcmu_agent import cli_kit
from rcmu_agent.cli import app
from rcmu_agent.errors import InvalidInputError

runner = CliRunner()
NAME = "Bella :cat: [bold] [/]"  # each would print differently through a Rich console with defaults
INFO = "likes :fish: and [/] [red]tuna[/red]"
STANDING = "Say where they stand, what they wear and what they hold."
QUESTION = "Who is on the left? [bold]:cat:[/] " + " ".join([STANDING] * 4)  # one line COLUMNS=200 would wrap
BASE_ENV = {"RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}


def rcmu(home: Path, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"RCMU_HOME": str(home), **BASE_ENV}, catch_exceptions=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """A memory that knows Obama under a name and info full of markup and emoji codes."""
    home = tmp_path_factory.mktemp("cli-text")
    photo = faces_dir / "reference" / "obama_obama.jpg"
    result = rcmu(home, "remember", NAME, "--photo", str(photo), "--info", INFO)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"remembered {NAME} (person, id {_entity_id(home)}) with 1 reference photo(s)\n"
    return home


def _entity_id(home: Path) -> str:
    listed = rcmu(home, "list", "--json")
    assert listed.exit_code == 0, listed.output
    (entity,) = json.loads(listed.stdout)
    return str(entity["id"])


@pytest.mark.unit
@pytest.mark.parametrize("error", [InvalidInputError(f"no entity '{NAME}'", "fix [/] it :fish:"), ValueError(NAME)])
def test_errors_print_as_written(
    error: Exception, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(cli_kit.overrides, "verbose", False)  # a traceback is not the line under test

    def fails() -> None:
        raise error

    with pytest.raises(typer.Exit):
        cli_kit.run(fails)
    assert f"error: {'' if isinstance(error, InvalidInputError) else 'ValueError: '}{error}" in capsys.readouterr().err


@pytest.mark.unit
def test_region_error_keeps_the_spec_and_its_example(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"never read: the region is checked first")
    spec = "1,2,3:dog:[bold]Bella[/] :cat:"
    result = rcmu(tmp_path / "home", "ask", str(photo), "Who?", "--region", spec)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert f"region '{spec}' does not start with four numbers" in result.stderr
    assert "e.g. 120,40,380,420:dog:Bella, 2 years old" in result.stderr


@pytest.mark.integration
def test_remember_list_forget_print_user_text_as_written(home: Path) -> None:
    entity_id = _entity_id(home)
    listed = rcmu(home, "list")
    assert listed.stdout == f"{NAME} (person, id {entity_id}, 1 photo(s)): {INFO}\n"
    (entity,) = json.loads(rcmu(home, "list", "--json").stdout)
    assert (entity["name"], entity["info"]) == (NAME, INFO)

    missing = rcmu(home, "forget", f"{NAME} 2")
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1
    assert f"'{NAME} 2'" in missing.stderr

    copy = home.parent / "cli-text-forget"  # forget in a copy: the module's other tests need the entity
    shutil.copytree(home, copy)
    forgot = rcmu(copy, "forget", NAME)
    assert forgot.exit_code == 0, forgot.output
    assert forgot.stdout == f"forgot {NAME} (id {entity_id})\n"


@pytest.mark.integration
def test_context_only_is_the_prompt_byte_for_byte_at_any_width(
    home: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = str(faces_dir / "scenes" / "two_people.jpg")
    exe = shutil.which("rcmu", path=os.path.dirname(sys.executable))
    assert exe, "the rcmu console script is installed with the package"
    env = {**os.environ, "RCMU_HOME": str(home), **BASE_ENV}
    runs = {
        columns: subprocess.Popen(
            [exe, "ask", scene, QUESTION, "--context-only"],
            env={**env, "COLUMNS": str(columns)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for columns in (40, 200)
    }
    printed = {columns: run.communicate(timeout=300) for columns, run in runs.items()}

    for name, value in {"RCMU_HOME": str(home), **BASE_ENV}.items():
        monkeypatch.setenv(name, value)
    from rcmu_agent.assistant import Assistant
    from rcmu_agent.settings import Settings

    prompt = Assistant(Settings()).ask(QUESTION, scene, context_only=True).prompt
    assert INFO in prompt and QUESTION in prompt and max(len(line) for line in prompt.splitlines()) > 200
    for columns, (stdout, stderr) in printed.items():
        assert runs[columns].returncode == 0, stderr.decode()
        assert stdout == prompt.encode(), f"COLUMNS={columns}"


@pytest.mark.integration
def test_json_is_never_wrapped(home: Path, monkeypatch: pytest.MonkeyPatch, faces_dir: Path) -> None:
    monkeypatch.setattr(cli_kit.out, "width", 40)  # what COLUMNS=40 gives the console
    scene = str(faces_dir / "scenes" / "two_people.jpg")
    result = rcmu(home, "ask", scene, QUESTION, "--context-only", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["context"].endswith(QUESTION) and any(r["name"] == NAME for r in payload["regions"])
    assert f'"name": {json.dumps(NAME)}' in result.stdout
