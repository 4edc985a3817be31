"""`rcmu export` and `rcmu import`: carry a memory between homes, back it up, load a knowledge base.

`rcmu_agent.cli` calls `register` once at import; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rcmu_agent.cli_kit import Command, JsonOpt, UserOpt, err, error_line, out, run, write
from rcmu_agent.cli_kit import assistant as make_assistant

__all__ = ["register"]


def export(
    folder: Annotated[Path, typer.Argument(metavar="OUT", help="A new folder to write (never overwritten).")],
    user: UserOpt = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="Every user's memory, not just one.")] = False,
    library: Annotated[
        bool, typer.Option("--library", help="Also write the photo library's metadata (library.jsonl).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a memory to OUT: entities.jsonl, the reference photos and a manifest (no vectors).
    `rcmu import OUT` loads it into any home, embedded or a Chroma server."""
    report = run(lambda: make_assistant().export_memory(folder, user=user, all_users=all_users, library=library))
    if as_json:
        write(report.model_dump_json(indent=2))
        return
    users = ", ".join(f"{u} ({n})" for u, n in report.users.items())
    out.print(
        f"exported {sum(report.users.values())} entit(ies) of {users} with {report.photos} photo(s) to {report.path}"
    )
    for missing in report.missing_photos:
        err.print(f"warning: reference photo {missing} is missing; exported without it")


def import_(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="An `rcmu export` folder, or a .jsonl / .csv knowledge base.")
    ],
    user: UserOpt = None,
    from_user: Annotated[
        str | None, typer.Option("--from-user", metavar="USER", help="Which user of a several-user export to load.")
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Load every user of an export into the user of the same name.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=0,
            metavar="N",
            help="Face-detection processes [CPU count, started once there are enough photos for them; 0: inline].",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load IN into memory: same id or same name updates, nothing is duplicated, a rerun after a kill
    resumes. Knowledge-base rows: name, info, category, photos (paths relative to the file)."""
    from rcmu_agent.errors import InvalidInputError

    def work() -> list[Any]:
        assistant = make_assistant()
        if not all_users:
            return [_import_one(assistant, source, user, from_user, workers)]
        if user is not None or from_user is not None:
            raise InvalidInputError("--all-users loads every user as they were", "drop --user / --from-user")
        from rcmu_agent.memory.transfer import read_source

        users = read_source(source).users
        if not users:
            raise InvalidInputError(f"{source} holds no users", "--all-users needs an `rcmu export` folder")
        return [_import_one(assistant, source, u, u, workers) for u in users]

    reports = run(work)
    if as_json:  # one object; a list of them for --all-users
        dumped = [r.model_dump(mode="json") for r in reports]
        write(json.dumps(dumped if all_users else dumped[0], indent=2, ensure_ascii=False))
    for report in reports:
        _summary(report, as_json)
    if not all(r.ok for r in reports):
        err.print(error_line("no row could be imported — fix the rows listed above and run the import again"))
        raise typer.Exit(2)


def _import_one(assistant: Any, source: Path, user: str | None, from_user: str | None, workers: int | None) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(TextColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:.1f} entities/s")

    label = f"importing for {user or assistant.settings.user}"
    columns = (TextColumn(label, markup=False), BarColumn(), MofNCompleteColumn(), Rate(""), TimeElapsedColumn())
    with Progress(*columns, TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("import", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return assistant.import_memory(
            source,
            user=user,
            from_user=from_user,
            workers=workers,
            progress=progress,
        )


def _summary(report: Any, as_json: bool) -> None:
    if not as_json:
        rate = (report.added + report.updated) / report.seconds if report.seconds else 0.0
        out.print(
            f"{report.rows} row(s) from {report.source} for user {report.user}: {report.added} added, "
            f"{report.updated} updated, {report.unchanged} unchanged, {len(report.failed)} failed "
            f"({report.seconds:.1f} s, {rate:.1f} entities/s)"
        )
    for line in report.failed:
        err.print(line)


def register(app: typer.Typer) -> None:
    app.command("export", cls=Command)(export)
    app.command("import", cls=Command)(import_)
