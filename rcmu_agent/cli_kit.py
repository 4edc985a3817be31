"""Plumbing every `rcmu` sub-command shares: consoles, the overrides from global options, and the
one error policy (fixable errors: one line, exit 2; anything else: exit 1, traceback with --verbose).

The consoles never rewrite text. Names, info, questions, answers, paths and error messages come from
users and models, and Rich would read `[bold]` or `[/]` in them as markup (or fail on it) and `:cat:`
as an emoji, and would hard-wrap long lines at the terminal width. So `out` and `err` print plain,
unwrapped text by default; the program's own styled words opt in by building a `rich.text.Text`
(`error_line`, `Text.assemble`), with user text appended as plain text. Output meant for other
programs (a prompt, an answer, JSON) goes through `write`, which hands the bytes to the stream as
they are.

Sub-command modules (`memory/cli.py`, `memory/library/cli.py`, `train/cli.py`, `evals/cli.py`, …)
import from here, never from `rcmu_agent.cli`, which imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup

from rcmu_agent.errors import RcmuError
from rcmu_agent.settings import Settings

__all__ = [
    "Command",
    "Group",
    "JsonOpt",
    "UserOpt",
    "assistant",
    "err",
    "error_line",
    "hoist_global_options",
    "out",
    "overrides",
    "run",
    "settings",
    "write",
    "write_exact",
]


def _console(*, stderr: bool = False) -> Console:
    """A console that prints text as given: no markup, no emoji codes, no highlighting, no wrapping."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


out = _console()
err = _console(stderr=True)
overrides: dict[str, Any] = {}

UserOpt = Annotated[
    str | None, typer.Option("--user", "-u", metavar="USER", help="Whose memory to use [env RCMU_USER].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def error_line(message: str) -> Text:
    """`error: <message>`, the prefix styled, the message (often quoting the user) kept as plain text."""
    return Text.assemble(("error:", "bold red"), " ", message)


def write(text: str, *, end: str = "\n") -> None:
    """Print `text` to stdout byte for byte: an answer or a JSON document is data, not something to lay out."""
    stream = out.file
    stream.write(text + end)
    stream.flush()


def write_exact(text: str) -> None:
    """Print `text` exactly, so `> file` holds the same bytes (the prompt of `--context-only`); a newline
    follows only on a terminal, where the shell prompt would otherwise start on the text's last line."""
    write(text, end="\n" if out.is_terminal else "")


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
        err.print(error_line(str(exc)))
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        err.print("interrupted; nothing half-written was kept")
        raise typer.Exit(130) from None
    except Exception as exc:
        if overrides.get("verbose"):
            raise
        err.print(error_line(f"{type(exc).__name__}: {exc} (rerun with --verbose for the traceback)"))
        raise typer.Exit(1) from exc


# ---- help in one style, global options anywhere ------------------------------------------------------
def _name_placeholders(params: Sequence[Any]) -> None:
    """Give every argument and valued option an upper-case placeholder (`NAME`, `--photo PHOTO`) unless
    it has one: Typer would show `{name}`, `<list[Path]>` or `<int range>` beside authors' `OUT`."""
    for param in params:
        if param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        name = (param.name or "value").upper()
        variadic = isinstance(param, TyperArgument) and param.nargs != 1
        param.metavar = f"{name}..." if variadic else name


class Command(TyperCommand):
    """A command whose help shows placeholders one way: `NAME` required, `[NAME]` optional, no types.
    Pass it as `app.command(cls=Command)`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _name_placeholders(self.params)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = str(param.metavar)  # set by _name_placeholders
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):  # Typer prints the type after the name: keep the name
                arguments.append((str(param.metavar), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class Group(TyperGroup):
    """The `rcmu` group: its options (`--home`, `--model`, `-v`, …) may also follow the command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _name_placeholders(self.params)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self, ctx, args))


def hoist_global_options(group: Any, ctx: Any, args: list[str]) -> list[str]:
    """`args` with the group's own options that follow the command moved in front of it, so
    `rcmu ask P Q --home D` means `rcmu --home D ask P Q` instead of failing with "No such option".

    A command's own option of the same name stays its own (`rcmu eval … --backend`), option values
    stay with their options (`--info --home` is info "--home"), and nothing after `--` moves."""
    movable = {name: _arity(p) for p in group.params if not isinstance(p, TyperArgument) for name in _names(p)}
    start = 0
    while start < len(args) and args[start].startswith("-") and args[start] != "--":
        start += 1 + (_arity_of(args[start], movable) or 0)
    if start >= len(args) or args[start] == "--":
        return args
    command = group.get_command(ctx, args[start])
    if command is None:
        return args
    own = _options_of(command, ctx)
    kept: list[str] = []
    moved: list[str] = []
    rest = args[start + 1 :]
    at = 0
    while at < len(rest):
        token = rest[at]
        if token == "--":
            kept += rest[at:]
            break
        taken = _arity_of(token, own)
        if taken is not None:  # the command's own option (and its value): it stays
            kept += rest[at : at + 1 + taken]
            at += 1 + taken
            continue
        taken = _arity_of(token, movable)
        if taken is not None:
            if at + taken >= len(rest):  # moved without its value, it would take the command name as one
                raise typer.BadParameter("a value must follow it", ctx=ctx, param_hint=f"'{token}'")
            moved += rest[at : at + 1 + taken]
            at += 1 + taken
            continue
        sub = command.get_command(ctx, token) if isinstance(command, TyperGroup) else None
        if sub is not None:  # `rcmu eval rcmu …`: from here on, the sub-command's options are its own
            command, own = sub, _options_of(sub, ctx)
        kept.append(token)
        at += 1
    return [*args[:start], *moved, args[start], *kept]


def _names(param: Any) -> list[str]:
    return [*param.opts, *param.secondary_opts]


def _arity(param: Any) -> int:
    """How many values follow the option's name on the command line."""
    return 0 if getattr(param, "is_flag", False) or getattr(param, "count", False) else max(param.nargs, 1)


def _arity_of(token: str, options: dict[str, int]) -> int | None:
    """The values `token` takes from the tokens after it, or None when it is not one of `options`."""
    if not token.startswith("-"):
        return None
    name, joined, _ = token.partition("=")
    if name not in options:
        return None
    return 0 if joined else options[name]


def _options_of(command: Any, ctx: Any) -> dict[str, int]:
    return {name: _arity(p) for p in command.get_params(ctx) if not isinstance(p, TyperArgument) for name in _names(p)}
