"""A rate column for rich progress bars (items per second)."""

from __future__ import annotations

from typing import Any

from rich.progress import ProgressColumn
from rich.text import Text

__all__ = ["Rate"]


class Rate(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} item/s" if speed else "- item/s", style="progress.data.speed")
