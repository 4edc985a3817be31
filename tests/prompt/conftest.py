"""Puts `_prompt_helpers` on the path, without making tests a package."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
