"""`rcmu` commands for the photo library: index, search, people, name, merge-clusters, split.

`rcmu_agent.cli` calls `register` once at import; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from rcmu_agent._cli import JsonOpt, UserOpt, err, out, run
from rcmu_agent._cli import assistant as make_assistant
from rcmu_agent._cli import settings as make_settings

__all__ = ["register"]


def _parse_date(value: str | None, what: str) -> date | None:
    from rcmu_agent.errors import InvalidInputError

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{what} {value!r} is not a date", "use YYYY-MM-DD, e.g. 2024-05-01") from exc


def index(
    folder: Annotated[Path, typer.Argument(help="The folder holding your photos (searched recursively).")],
    user: UserOpt = None,
    as_json: JsonOpt = False,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Processes for detection and embedding [env RCMU_LIBRARY_WORKERS; 0: one per core]."),
    ] = None,
) -> None:
    """Index the photos under FOLDER: faces, who they are, date, place. Run it again after changes:
    only new or changed files are read (moves and duplicates are recognised by content)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class Rate(TextColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            return Text(f"{task.speed or 0:.2f} photos/s")

    def work() -> Any:
        from rcmu_agent.assistant import Assistant

        assistant = Assistant(make_settings(library_workers=workers))
        columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), Rate(""), TextColumn("ETA"))
        with Progress(*columns, TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("index", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return assistant.index_library(folder, user=user, progress=progress)

    report = run(work)
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        _print_report(report)
    if report.photos == 0:  # a silent success would leave search and `ask --library` answering nothing
        run(lambda: _nothing_indexed(folder, bool(report.skipped)))


def _print_report(report: Any) -> None:
    out.print(
        f"{report.photos} photo(s) indexed: {report.added} added, {report.unchanged} unchanged, "
        f"{report.moved} moved, {report.duplicates} duplicate(s), {report.removed} removed, "
        f"{len(report.skipped)} skipped ({report.seconds:.1f} s)",
        highlight=False,
    )
    for skipped in report.skipped:
        err.print(f"skipped {skipped.path}: {skipped.reason}", markup=False, highlight=False)


def _nothing_indexed(folder: Path, skipped: bool) -> None:
    from rcmu_agent.errors import InvalidInputError
    from rcmu_agent.images import PHOTO_SUFFIXES

    fix = (
        "fix or remove the skipped files listed, then run `rcmu index` again"
        if skipped
        else f"point `rcmu index` at the folder holding your photos ({' '.join(sorted(PHOTO_SUFFIXES))})"
    )
    raise InvalidInputError(f"no photo was indexed under {folder}", fix)


def search(
    person: Annotated[
        list[str] | None, typer.Option("--person", "-p", help="Someone who must be in the photo (repeatable: all).")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", "-t", help="Words to match (names, places, folders).")] = None,
    since: Annotated[str | None, typer.Option(help="Taken on or after this date (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Taken on or before this date (YYYY-MM-DD).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many photos.")] = 10,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find photos by who is in them (several --person: together), text and date range."""

    def work() -> Any:
        return make_assistant().search_photos(
            people=person or [],
            text=text,
            since=_parse_date(since, "--since"),
            until=_parse_date(until, "--until"),
            limit=limit,
            user=user,
        )

    hits = run(work)
    if as_json:
        out.print_json(json.dumps([h.model_dump(mode="json") for h in hits]))
        return
    if not hits:
        out.print("no photo matches")
    for hit in hits:
        when = f"{hit.taken_at:%Y-%m-%d}" if hit.taken_at else "date unknown"
        cited = "; ".join(
            f"{hit.regions[i].info} at {','.join(f'{v:.0f}' for v in hit.regions[i].box)}" for i in hit.matched_regions
        )
        out.print(f"{hit.path}  {when}  score {hit.score:.2f}  {cited}", markup=False, highlight=False)


def people(
    all_: Annotated[bool, typer.Option("--all", help="Include clusters already named.")] = False,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List clusters of faces nobody has named yet, with sample photos and face crops."""
    clusters = run(lambda: make_assistant().people(user=user, include_named=all_))
    if as_json:
        out.print_json(json.dumps([c.model_dump() for c in clusters]))
        return
    if not clusters:
        out.print("no unnamed faces (index photos with `rcmu index DIR`)")
    for c in clusters:
        title = f"cluster {c.id}: {c.size} face(s)" + (f", named {c.name}" if c.name else "")
        out.print(title, highlight=False)
        out.print(f"  faces {' '.join(str(f) for f in c.faces)}", highlight=False)
        for photo, crop in zip(c.sample_paths, c.crops + [""] * len(c.sample_paths), strict=False):
            out.print(f"  {photo}" + (f"  (crop {crop})" if crop else ""), markup=False, highlight=False)


def name(
    cluster: Annotated[int, typer.Argument(help="Cluster id, as `rcmu people` shows.")],
    person: Annotated[str, typer.Argument(metavar="NAME", help="Who they are, e.g. 'Rose Leslie'.")],
    info: Annotated[str | None, typer.Option("--info", "-i", help="What to know about them.")] = None,
    user: UserOpt = None,
) -> None:
    """Name every face in a cluster; later photos of them are recognised too."""
    c = run(lambda: make_assistant().name_cluster(cluster, person, info=info, user=user))
    out.print(f"named cluster {c.id} [bold]{c.name}[/] ({c.size} face(s))")


def merge_clusters(
    clusters: Annotated[list[int], typer.Argument(help="Two or more cluster ids; the first keeps its id.")],
    user: UserOpt = None,
) -> None:
    """Merge face clusters that are the same person."""
    c = run(lambda: make_assistant().merge_clusters(clusters, user=user))
    out.print(f"cluster {c.id} now has {c.size} face(s)" + (f", named {c.name}" if c.name else ""))


def split(
    cluster: Annotated[int, typer.Argument(help="The cluster to take faces out of.")],
    faces: Annotated[list[int], typer.Argument(help="Face ids to move to a new cluster (see `rcmu people`).")],
    user: UserOpt = None,
) -> None:
    """Move faces that are someone else out of a cluster, into a new one."""
    c = run(lambda: make_assistant().split_cluster(cluster, faces, user=user))
    out.print(f"new cluster {c.id} with {c.size} face(s)")


def register(app: typer.Typer) -> None:
    """Add the photo-library commands to `app`."""
    app.command()(index)
    app.command()(search)
    app.command()(people)
    app.command()(name)
    app.command("merge-clusters")(merge_clusters)
    app.command()(split)
