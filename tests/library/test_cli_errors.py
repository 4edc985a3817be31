"""The photo-library commands' silent non-errors made into one-line `problem — fix` errors (issue 22), and
their help in the one placeholder style.

Run in-process through the `rcmu` app. The library is built once per module from the photos checked in
under evals/samples, so nothing outside the repository is needed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from rcmu_agent import Assistant, Settings
from rcmu_agent.cli import app
from rcmu_agent.images import PHOTO_SUFFIXES

runner = CliRunner()
SAMPLE_PHOTOS = Path(__file__).resolve().parents[2] / "evals" / "samples" / "images"
TYPES = " ".join(sorted(PHOTO_SUFFIXES))
MY_COMMANDS = [
    ["index"],
    ["search"],
    ["people"],
    ["name"],
    ["merge-clusters"],
    ["split"],
    ["eval", "rcmu"],
    ["eval", "rcpbench"],
    ["eval", "yollava"],
    ["eval", "compare"],
    ["data", "validate"],
    ["data", "build"],
    ["train"],
    ["merge"],
]


def rcmu(home: Path, *args: str) -> Result:
    env = {"RCMU_HOME": str(home), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def error_of(result: Result) -> str:
    """The one line a failed command printed, without its `error: ` prefix."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A library of two photos whose faces the user named Rose Leslie and Kit Harington."""
    root = tmp_path_factory.mktemp("library-errors")
    photos = root / "photos"
    photos.mkdir()
    people = {"rose.jpg": "Rose Leslie", "kit.jpg": "Kit Harington"}
    shutil.copy(SAMPLE_PHOTOS / "reference" / "rose_leslie_img1.jpg", photos / "rose.jpg")
    shutil.copy(SAMPLE_PHOTOS / "reference" / "kit_harington_john1.jpg", photos / "kit.jpg")
    settings = Settings(home=root / "home", object_detector=None, image_embedding_model=None, library_workers=0)
    assistant = Assistant(settings)
    assert assistant.index_library(photos).added == 2
    for cluster in assistant.people():
        (photo,) = {Path(p).name for p in cluster.sample_paths}
        assistant.name_cluster(cluster.id, people[photo])
    return SimpleNamespace(root=root, home=root / "home", photos=photos)


@pytest.mark.integration
def test_a_misspelt_person_is_nobody_known_with_the_closest_name(library: SimpleNamespace) -> None:
    result = rcmu(library.home, "search", "--person", "Rose Lesley")
    assert result.exit_code == 2 and result.stdout == ""  # not "no photo matches"
    assert error_of(result) == "nobody called 'Rose Lesley' is known — did you mean Rose Leslie?"
    one_word = rcmu(library.home, "search", "--person", "Harrington")
    assert one_word.exit_code == 2
    assert error_of(one_word) == "nobody called 'Harrington' is known — did you mean Kit Harington?"
    stranger = rcmu(library.home, "search", "--person", "Zelda")
    assert stranger.exit_code == 2
    assert error_of(stranger) == (
        "nobody called 'Zelda' is known (known: Kit Harington, Rose Leslie) — teach them with `rcmu remember`, "
        "or name a face cluster with `rcmu name CLUSTER NAME`"
    )
    for name in ("Rose Leslie", "Rose", "leslie"):  # the full name or any of its words still finds her
        found = rcmu(library.home, "search", "--person", name)
        assert found.exit_code == 0 and "rose.jpg" in found.stdout and "kit.jpg" not in found.stdout, name


@pytest.mark.integration
def test_an_empty_folder_indexed_into_a_full_library_exits_2_naming_it(
    library: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(library.root)
    Path("empty").mkdir()
    result = rcmu(library.home, "index", "empty")
    assert result.exit_code == 2 and result.stdout == ""  # no "2 photo(s) indexed: 0 added"
    assert error_of(result) == (
        f"no photo was indexed under empty: it holds no photos — point `rcmu index` at the folder holding your "
        f"photos ({TYPES})"
    )
    Path("empty", "notes.txt").write_text("not a photo")
    Path("empty", ".hidden.jpg").write_text("ignored")
    result = rcmu(library.home, "index", "empty", "-w", "0")
    assert result.exit_code == 2 and result.stdout == ""
    assert error_of(result) == (
        f"no photo was indexed under empty: it holds no photos (1 other file(s)) — point `rcmu index` at the "
        f"folder holding your photos ({TYPES})"
    )
    Path("empty", "broken.jpg").write_text("not a jpeg")
    result = rcmu(library.home, "index", "empty")
    assert result.exit_code == 2
    *skipped, last = result.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in skipped] == [f"skipped {Path('empty', 'broken.jpg')}"]
    assert last == (
        "error: no photo was indexed under empty: none of its 1 photo file(s) could be read — fix or remove the "
        "skipped files listed, then run `rcmu index` again"
    )


@pytest.mark.integration
def test_an_index_that_did_work_still_exits_0(library: SimpleNamespace, tmp_path: Path) -> None:
    again = rcmu(library.home, "index", str(library.photos))
    assert again.exit_code == 0 and "2 unchanged" in again.stdout, again.output
    emptied = tmp_path / "emptied"
    emptied.mkdir()
    shutil.copy(SAMPLE_PHOTOS / "obama1.jpg", emptied / "obama.jpg")
    assert rcmu(library.home, "index", str(emptied), "-w", "0").exit_code == 0
    (emptied / "obama.jpg").unlink()
    removed = rcmu(library.home, "index", str(emptied))  # the deletion is the work done
    assert removed.exit_code == 0 and "1 removed" in removed.stdout, removed.output
    (tmp_path / "one.jpg").write_bytes(b"")
    a_file = rcmu(library.home, "index", str(tmp_path / "one.jpg"))
    assert a_file.exit_code == 2
    assert error_of(a_file) == (
        f"{tmp_path / 'one.jpg'} is a file, not a folder — index the folder that holds it: rcmu index {tmp_path}"
    )


def _command(path: list[str]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.unit
def test_index_has_the_same_short_workers_option_as_import() -> None:
    def workers(command: str) -> list[str]:
        (param,) = [p for p in _command([command]).params if p.name == "workers"]
        return sorted(param.opts)

    assert workers("index") == workers("import") == ["--workers", "-w"]


@pytest.mark.unit
@pytest.mark.parametrize("path", MY_COMMANDS, ids=" ".join)
def test_help_placeholders_are_upper_case_words(path: list[str]) -> None:
    """`FOLDER`, `--limit N`: never Typer's `{folder}`, `<list[int]>` or `<int range>`."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not re.search(r"[{<][\w\[]", result.stdout), result.stdout  # `{name}`, `<path>`, `<list[int]>`
    for param in _command(path).params:
        if not getattr(param, "is_flag", False) and param.name != "help":
            assert re.fullmatch(r"[A-Z][A-Z_:]*(\.\.\.)?", param.metavar or ""), (param.name, param.metavar)
