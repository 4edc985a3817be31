"""Plumbing every `rcmu` sub-command shares: consoles, the overrides from global options, and the
one error policy (fixable errors: one line, exit 2; anything else: exit 1, traceback with --verbose).

Sub-command modules (`memory/cli.py`, `memory/library_cli.py`, `train/cli.py`, `evals/cli.py`, …)
import from here, never from `rcmu_agent.cli`, which imports them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from rcmu_agent.errors import RcmuError
from rcmu_agent.settings import Settings

__all__ = ["JsonOpt", "UserOpt", "assistant", "err", "out", "overrides", "run", "settings"]

out = Console()
err = Console(stderr=True)
overrides: dict[str, Any] = {}

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Whose memory to use [env RCMU_USER].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def settings(**extra: Any) -> Settings:
    """Settings from the environment, overridden by the global options, then by `extra`."""
    values = {k: v for k, v in overrides.items() if k != "verbose"}
    values.update({k: v for k, v in extra.items() if v is not None})
    return Settings(**values)


def assistant(config: Settings | None = None) -> Any:
    """The Assistant over `config` (default: `settings()`)."""
    from rcmu_agent.assistant import Assistant

    return Assistant(config or settings())


def run(action: Any) -> Any:
    """Turn errors into one line and an exit code; keep tracebacks for --verbose."""
    try:
        return action()
    except RcmuError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        err.print("interrupted; nothing half-written was kept")
        raise typer.Exit(130) from None
    except Exception as exc:
        if overrides.get("verbose"):
            raise
        err.print(
            f"[bold red]error:[/] {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from exc
