"""`rcmu` commands for the photo library: index, search, people, name, merge-clusters, split.

`rcmu_agent.cli` calls `register` once at import; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from rcmu_agent.cli_kit import Command, JsonOpt, UserOpt, err, out, run, write
from rcmu_agent.cli_kit import assistant as make_assistant
from rcmu_agent.cli_kit import settings as make_settings

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
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="The folder holding your photos (searched recursively).")
    ],
    user: UserOpt = None,
    as_json: JsonOpt = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",  # as `rcmu import` has it: the same flag spelled the same way everywhere
            min=0,
            metavar="N",
            help="Processes for detection and embedding [env RCMU_LIBRARY_WORKERS; 0: one per core].",
        ),
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
        from rcmu_agent.errors import InvalidInputError

        if folder.is_file():  # the library would say it "does not exist", which it plainly does
            raise InvalidInputError(
                f"{folder} is a file, not a folder", f"index the folder that holds it: rcmu index {folder.parent}"
            )
        assistant = Assistant(make_settings(library_workers=workers))
        columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), Rate(""), TextColumn("ETA"))
        with Progress(*columns, TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("index", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return assistant.index_library(folder, user=user, progress=progress)

    report = run(work)
    if as_json:
        write(report.model_dump_json(indent=2))
    found = report.added + report.unchanged + report.moved + report.duplicates
    if not found and not report.removed:  # nothing done: a summary of the library's other photos would read as success
        _nothing_indexed(folder, report.skipped)
    if not as_json:
        _print_report(report)


def _print_report(report: Any) -> None:
    out.print(
        f"{report.photos} photo(s) indexed: {report.added} added, {report.unchanged} unchanged, "
        f"{report.moved} moved, {report.duplicates} duplicate(s), {report.removed} removed, "
        f"{len(report.skipped)} skipped ({report.seconds:.1f} s)",
    )
    for skipped in report.skipped:
        err.print(f"skipped {skipped.path}: {skipped.reason}")


def _nothing_indexed(folder: Path, skipped: list[Any]) -> None:
    """Exit 2 with why FOLDER gave no photo: it holds none (a wrong folder: name the file types looked
    for), or its photos could not be read (list those; the other files are not photos and say nothing).
    FOLDER is named as the user typed it, not resolved, so they recognise their own words."""
    from rcmu_agent.errors import InvalidInputError
    from rcmu_agent.images import PHOTO_SUFFIXES

    unreadable = [s for s in skipped if Path(s.path).suffix.lower() in PHOTO_SUFFIXES or Path(s.path).is_dir()]
    for entry in unreadable:
        err.print(f"skipped {entry.path}: {entry.reason}")
    if unreadable:
        problem = f"no photo was indexed under {folder}: none of its {len(unreadable)} photo file(s) could be read"
        fix = "fix or remove the skipped files listed, then run `rcmu index` again"
    else:
        others = f" ({len(skipped)} other file(s))" if skipped else ""
        problem = f"no photo was indexed under {folder}: it holds no photos{others}"
        fix = f"point `rcmu index` at the folder holding your photos ({' '.join(sorted(PHOTO_SUFFIXES))})"

    def fail() -> None:
        raise InvalidInputError(problem, fix)

    run(fail)


def search(
    person: Annotated[
        list[str] | None,
        typer.Option("--person", "-p", metavar="NAME", help="Someone who must be in the photo (repeatable: all)."),
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", "-t", metavar="WORDS", help="Words to match (names, places, folders).")
    ] = None,
    since: Annotated[str | None, typer.Option(metavar="DATE", help="Taken on or after this date (YYYY-MM-DD).")] = None,
    until: Annotated[
        str | None, typer.Option(metavar="DATE", help="Taken on or before this date (YYYY-MM-DD).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", help="At most this many photos.")] = 10,
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
        write(json.dumps([h.model_dump(mode="json") for h in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        out.print("no photo matches")
    for hit in hits:
        when = f"{hit.taken_at:%Y-%m-%d}" if hit.taken_at else "date unknown"
        cited = "; ".join(
            f"{hit.regions[i].info} at {','.join(f'{v:.0f}' for v in hit.regions[i].box)}" for i in hit.matched_regions
        )
        out.print(f"{hit.path}  {when}  score {hit.score:.2f}  {cited}")


def people(
    all_: Annotated[bool, typer.Option("--all", help="Include clusters already named.")] = False,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List clusters of faces nobody has named yet, with sample photos and face crops."""
    clusters = run(lambda: make_assistant().people(user=user, include_named=all_))
    if as_json:
        write(json.dumps([c.model_dump(mode="json") for c in clusters], indent=2, ensure_ascii=False))
        return
    if not clusters:
        out.print("no unnamed faces (index photos with `rcmu index FOLDER`)")
    for c in clusters:
        title = f"cluster {c.id}: {c.size} face(s)" + (f", named {c.name}" if c.name else "")
        out.print(title)
        out.print(f"  faces {' '.join(str(f) for f in c.faces)}")
        for photo, crop in zip(c.sample_paths, c.crops + [""] * len(c.sample_paths), strict=False):
            out.print(f"  {photo}" + (f"  (crop {crop})" if crop else ""))


def name(
    cluster: Annotated[int, typer.Argument(metavar="CLUSTER", help="Cluster id, as `rcmu people` shows.")],
    person: Annotated[str, typer.Argument(metavar="NAME", help="Who they are, e.g. 'Rose Leslie'.")],
    info: Annotated[str | None, typer.Option("--info", "-i", metavar="TEXT", help="What to know about them.")] = None,
    user: UserOpt = None,
) -> None:
    """Name every face in a cluster; later photos of them are recognised too."""
    c = run(lambda: make_assistant().name_cluster(cluster, person, info=info, user=user))
    out.print(Text.assemble(f"named cluster {c.id} ", (c.name, "bold"), f" ({c.size} face(s))"))  # name as given


def merge_clusters(
    clusters: Annotated[
        list[int], typer.Argument(metavar="CLUSTER...", help="Two or more cluster ids; the first keeps its id.")
    ],
    user: UserOpt = None,
) -> None:
    """Merge face clusters that are the same person."""
    c = run(lambda: make_assistant().merge_clusters(clusters, user=user))
    out.print(f"cluster {c.id} now has {c.size} face(s)" + (f", named {c.name}" if c.name else ""))


def split(
    cluster: Annotated[int, typer.Argument(metavar="CLUSTER", help="The cluster to take faces out of.")],
    faces: Annotated[
        list[int], typer.Argument(metavar="FACE...", help="Face ids to move to a new cluster (see `rcmu people`).")
    ],
    user: UserOpt = None,
) -> None:
    """Move faces that are someone else out of a cluster, into a new one."""
    c = run(lambda: make_assistant().split_cluster(cluster, faces, user=user))
    out.print(f"new cluster {c.id} with {c.size} face(s)")


def register(app: typer.Typer) -> None:
    """Add the photo-library commands to `app`."""
    app.command(cls=Command)(index)
    app.command(cls=Command)(search)
    app.command(cls=Command)(people)
    app.command(cls=Command)(name)
    app.command("merge-clusters", cls=Command)(merge_clusters)
    app.command(cls=Command)(split)
