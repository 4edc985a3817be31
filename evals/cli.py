"""`rcmu` commands for this subpackage; `rcmu_agent.cli` calls `register` once at import."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this subpackage's commands to `app` (imports stay light: heavy work imports inside commands)."""
