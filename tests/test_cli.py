"""The `rcmu` command line, run in-process with Typer's runner and once as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from rcmu_agent.cli import app
from rcmu_agent.testing import build_tiny_qwen2vl

runner = CliRunner()


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("cli-home")
    ref = faces_dir / "reference"
    for name, photo, info in [
        ("Barack Obama", "obama_obama.jpg", "44th president, plays basketball"),
        ("Joe Biden", "biden_biden.jpg", "46th president, likes ice cream"),
    ]:
        result = rcmu(home, "remember", name, "--photo", str(ref / photo), "--info", info)
        assert result.exit_code == 0, result.output
    return home


def rcmu(home: Path, *args: str, env: dict[str, str] | None = None) -> object:
    base = {"RCMU_HOME": str(home), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}
    return runner.invoke(app, list(args), env={**base, **(env or {})}, catch_exceptions=False)


@pytest.mark.unit
def test_help_reads_well() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("remember", "forget", "list", "ask", "describe"):
        assert command in result.output
    ask_help = runner.invoke(app, ["ask", "--help"]).output
    assert "--context-only" in ask_help and "<region1>" in ask_help and "x1,y1,x2,y2" in ask_help


@pytest.mark.integration
def test_list_and_json(taught: Path) -> None:
    result = rcmu(taught, "list", "--json")
    assert result.exit_code == 0
    names = sorted(e["name"] for e in json.loads(result.stdout))
    assert names == ["Barack Obama", "Joe Biden"]


@pytest.mark.integration
def test_ask_context_only_json_and_annotate(taught: Path, faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotated.png"
    scene = faces_dir / "scenes" / "two_people.jpg"
    result = rcmu(taught, "ask", str(scene), "Who is on the left?", "--context-only", "--json", "--annotate", str(out))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"answer", "citations", "regions"}
    regions = sorted(payload["regions"], key=lambda r: r["box"][0])
    assert [r["name"] for r in regions] == ["Barack Obama", "Joe Biden"]
    assert all(len(r["box"]) == 4 and r["category"] == "person" and r["entity_id"] for r in regions)
    assert payload["context"].endswith("Who is on the left?")
    with Image.open(out) as png:
        assert png.size == (1126, 661)
        assert png.getpixel((253, 120))[:3] != Image.open(scene).convert("RGB").getpixel((253, 120))  # box drawn


@pytest.mark.integration
def test_unknown_face_is_null_in_json(taught: Path, faces_dir: Path) -> None:
    result = rcmu(taught, "ask", str(faces_dir / "scenes" / "alex_lacamoire1.jpg"), "Who?", "--context-only", "--json")
    payload = json.loads(result.stdout)
    (region,) = payload["regions"]
    assert region["name"] is None and region["entity_id"] is None
    assert region["index"] == 1 and payload["unrecognised"] == [1]  # numbered, so "[1] is Alex" can name it


@pytest.mark.integration
def test_answer_with_a_local_tiny_model(taught: Path, faces_dir: Path, tmp_path: Path) -> None:
    model = build_tiny_qwen2vl(tmp_path / "tiny")
    scene = str(faces_dir / "scenes" / "two_people.jpg")
    result = rcmu(
        taught, "--model", str(model), "ask", scene, "Who is on the left?", "--json", env={"RCMU_MAX_NEW_TOKENS": "8"}
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["answer"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "{data}/objects/nope.jpg", "Who?"], "does not exist"),
        (["ask", "{corrupt}", "Who?"], "not an image"),
        (["ask", "{scene}", "Who?", "--region", "0,0,5000,10:person:x"], "outside the 1126x661 image"),
        (["ask", "{scene}", "Who?", "--region", "300,10,100,50"], "inverted"),
        (["ask", "{scene}", "   "], "question is empty"),
        (["forget", "Barack Obama", "--user", "nobody"], "user 'nobody' has no entity 'Barack Obama'"),
        (["remember", "X", "--photo", "{data}/objects/rocket.jpg", "--info", "a rocket fan"], "no face found"),
        (["remember", "  ", "--photo", "{ref}/obama_obama.jpg", "--info", "x"], "name is empty"),
        (["forget", "Nobody Known"], "has no entity"),
        (["ask", "{scene}", "Who?", "--thread", "t", "extra"], "give the photo and the question"),
        (["ask", "{scene}", "Who?"], "RCMU_MODEL"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    taught: Path, shared_data: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    subst = {
        "data": str(shared_data),
        "scene": str(shared_data / "faces/scenes/two_people.jpg"),
        "ref": str(shared_data / "faces/reference"),
        "corrupt": str(corrupt),
    }
    before = sorted(p.name for p in (taught / "photos").rglob("*"))
    result = rcmu(taught, *[a.format(**subst) for a in args], env={"RCMU_MODEL": "/nonexistent/model"})
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (taught / "photos").rglob("*")) == before  # nothing half-written


@pytest.mark.integration
def test_real_subprocess_exit_code(taught: Path, faces_dir: Path) -> None:
    exe = shutil.which("rcmu", path=os.path.dirname(sys.executable))
    assert exe, "the rcmu console script is installed with the package"
    env = {**os.environ, "RCMU_HOME": str(taught), "RCMU_OBJECT_DETECTOR": ""}
    ok = subprocess.run([exe, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "Barack Obama" in ok.stdout
    bad = subprocess.run(
        [exe, "ask", str(faces_dir / "nope.jpg"), "Who?"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: photo") and "does not exist" in bad.stderr


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["ask", "{folder}", "Who?"],
            "'{folder}' is a folder, not a photo — give one photo file: rcmu ask PHOTO QUESTION",
        ),
        (["describe", "{folder}"], "'{folder}' is a folder, not a photo — give one photo file: rcmu describe PHOTO"),
        (["remember", "X", "-p", "{folder}", "-i", "x"], "'{folder}' is a folder, not a photo — give photo files"),
        (
            ["ask", "Who is here?", "{photo}"],
            "the photo '{photo}' comes after the question 'Who is here?' — put the photo first: rcmu ask PHOTO",
        ),
        (["ask", "{photo}"], "'{photo}' is a photo, but no question was given — ask it as rcmu ask PHOTO QUESTION"),
    ],
)
def test_wrong_way_arguments_say_what_is_wrong(tmp_path: Path, args: list[str], message: str) -> None:
    """Caught before any work (no model, no memory opened): one line, exit 2."""
    folder, photo = tmp_path / "photos", tmp_path / "photo.jpg"
    folder.mkdir()
    photo.write_bytes(b"only its existence matters here")
    subst = {"folder": str(folder), "photo": str(photo)}
    result = rcmu(tmp_path / "home", *[a.format(**subst) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message.format(**subst)}")
    assert result.stderr.count("\n") == 1 and not (tmp_path / "home").exists()


@pytest.mark.unit
def test_global_options_may_follow_the_command(tmp_path: Path) -> None:
    from rcmu_agent import cli_kit

    folder = tmp_path / "photos"
    folder.mkdir()
    result = runner.invoke(app, ["ask", str(folder), "Who?", "--home", str(tmp_path / "h"), "-v", "--device=cpu"])
    assert result.exit_code == 2 and "is a folder" in result.stderr  # not "No such option: --home"
    assert cli_kit.overrides == {"home": tmp_path / "h", "device": "cpu", "verbose": True}
    cli_kit.overrides.clear()  # -v would make later in-process errors raise instead of printing their line
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    hoisted = [
        (["remember", "X", "--info", "--home", "-p", "p"], ["remember", "X", "--info", "--home", "-p", "p"]),  # a value
        (["ask", "p", "--", "--home"], ["ask", "p", "--", "--home"]),  # after --: the question "--home"
        (["eval", "rcmu", "--backend", "b", "--home", "D"], ["--home", "D", "eval", "rcmu", "--backend", "b"]),
        (["--model", "m", "list", "--home=D"], ["--model", "m", "--home=D", "list"]),
    ]
    for args, expected in hoisted:
        assert cli_kit.hoist_global_options(group, ctx, args) == expected
    with pytest.raises(typer.BadParameter, match="a value must follow it"):  # not "No such command 'ask'"
        cli_kit.hoist_global_options(group, ctx, ["ask", "p", "q", "--home"])


@pytest.mark.unit
@pytest.mark.parametrize("command", ["", "remember", "forget", "list", "ask", "describe", "export", "import"])
def test_help_placeholders_are_upper_case_names(command: str) -> None:
    """One style: `NAME`, `[PHOTO] QUESTION`, `--photo PHOTO`; no `{name}` and no type names like `<list[Path]>`."""
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    usage = result.output.splitlines()[0]
    assert "{" not in usage and "}" not in usage
    assert not re.search(r"<(str|int|float|path|bool|list\[[^]]*\]|int range|float range)>", result.output)
    assert not re.search(r"^\s+(-\w, )?--[\w-]+ [a-z]", result.output, re.MULTILINE)  # `--photo photo`


@pytest.mark.integration
def test_a_follow_up_needs_a_thread_that_exists(taught: Path, faces_dir: Path) -> None:
    scene = str(faces_dir / "scenes" / "two_people.jpg")
    never = rcmu(taught, "ask", "--thread", "nosuch", "And on the right?")
    assert never.exit_code == 2, never.output
    assert never.stderr == (
        "error: no thread 'nosuch' exists — start it with a photo: rcmu ask --thread nosuch PHOTO QUESTION\n"
    )
    started = rcmu(taught, "ask", "--thread", "fresh", scene, "Who is on the left?", "--context-only")
    assert started.exit_code == 0, started.output
    follow_up = rcmu(taught, "ask", "--thread", "fresh", "And on the right?", "--context-only")
    assert follow_up.exit_code == 0, follow_up.output
    assert follow_up.stdout.endswith("And on the right?")


@pytest.mark.integration
def test_home_after_the_command_is_used(taught: Path, tmp_path: Path) -> None:
    result = rcmu(tmp_path / "elsewhere", "list", "--json", "--home", str(taught))
    assert result.exit_code == 0, result.output
    assert sorted(e["name"] for e in json.loads(result.stdout)) == ["Barack Obama", "Joe Biden"]
