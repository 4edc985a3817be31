"""The suite's own rule: every test is exactly one of `unit` or `integration`, so `pytest -m unit` plus
`pytest -m integration` is the whole suite. A test with neither or both fails collection, by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs pytest in a subprocess

MODULE = """
import pytest

def test_plain():
    pass

@pytest.mark.unit
@pytest.mark.integration
def test_both():
    pass

@pytest.mark.unit
def test_fine():
    pass
"""


def test_a_test_with_neither_or_both_marks_fails_collection_by_name(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), tests / "conftest.py")
    (tests / "test_example.py").write_text(MODULE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    unit: u\n    integration: i\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "unit", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "2 test(s) need exactly one of the marks unit, integration" in output
    assert "tests/test_example.py::test_plain: no unit or integration mark" in output
    assert "tests/test_example.py::test_both: integration and unit" in output
    assert "test_fine" not in output  # checked before `-m unit` deselects anything, and only the wrong ones named
