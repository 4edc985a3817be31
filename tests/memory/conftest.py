"""Puts `_memory_helpers` on the path, without making tests a package; the scene photos every test asks about."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture()
def scenes(faces_dir: Path) -> Path:
    return faces_dir / "scenes"
