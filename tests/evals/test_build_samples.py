"""The sample sets are data (`samples/source.toml`) joined with the shared photos by a script: re-running
the script reproduces the committed files, so the data file is the whole truth about them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent.evals.build_samples import SAMPLES, build

pytestmark = pytest.mark.integration  # dlib face detection on the copied photos

HAND_WRITTEN = {Path("README.md"), Path("source.toml")}


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def test_builder_reproduces_the_committed_samples(shared_data: Path, tmp_path: Path) -> None:
    build(shared_data, tmp_path)
    assert _files(tmp_path) == _files(SAMPLES) - HAND_WRITTEN
    for name in sorted(_files(tmp_path)):
        built, committed = tmp_path / name, SAMPLES / name
        if name.suffix == ".jpg":
            # JPEG bytes depend on the libjpeg inside the installed Pillow; the pixels must agree
            with Image.open(built) as a, Image.open(committed) as b:
                assert a.size == b.size, name
                diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
                assert diff.mean() < 2, name
        else:  # the questions, answers, facts and dlib face boxes: exactly as committed
            assert built.read_bytes() == committed.read_bytes(), name
