"""`rcmu`: teach the assistant who is who, then ask about photos.

Errors a user can fix print as one line (`error: <problem> — <fix>`) and exit 2; anything else
exits 1 and says how to see the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from rcmu_agent._cli_checks import fail, not_a_folder, photo_and_question, thread_exists
from rcmu_agent.cli_kit import Command, Group, JsonOpt, UserOpt, err, out, overrides, run, settings, write, write_exact
from rcmu_agent.cli_kit import assistant as make_assistant
from rcmu_agent.errors import InvalidInputError

app = typer.Typer(
    name="rcmu",
    help="Ask about a photo with a personal memory: who and what is where, answered with [n] citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=Group,
)


@app.callback()
def main(
    home: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Memory and threads directory [env RCMU_HOME; ~/.rcmu].")
    ] = None,
    model: Annotated[str | None, typer.Option(metavar="MODEL", help="Model id or directory [env RCMU_MODEL].")] = None,
    adapter: Annotated[
        str | None, typer.Option(metavar="ADAPTER", help="LoRA adapter id or directory [env RCMU_ADAPTER].")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(metavar="BACKEND", help="transformers | openai [env RCMU_BACKEND].")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(metavar="URL", help="OpenAI-compatible URL [env RCMU_BASE_URL].")
    ] = None,
    device: Annotated[str | None, typer.Option(metavar="DEVICE", help="auto | cpu | cuda [env RCMU_DEVICE].")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step; show tracebacks.")] = False,
) -> None:
    """Options here apply to every command and override the RCMU_* environment; they may come before or
    after the command (`rcmu --home D list` or `rcmu list --home D`)."""
    values = {
        "home": home,
        "model": model,
        "adapter": adapter,
        "backend": backend,
        "base_url": base_url,
        "device": device,
    }
    overrides.clear()
    overrides.update({k: v for k, v in values.items() if v is not None})
    overrides["verbose"] = verbose
    if not verbose:  # library progress bars and warnings would drown the answer
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command(cls=Command)
def remember(
    name: Annotated[str, typer.Argument(help="Who or what, e.g. 'Rose Leslie' or 'Bella'.")],
    photo: Annotated[list[Path], typer.Option("--photo", "-p", metavar="PHOTO", help="Reference photo (repeatable).")],
    info: Annotated[
        str, typer.Option("--info", "-i", metavar="TEXT", help="What to know about them (no visual details needed).")
    ],
    category: Annotated[str, typer.Option(metavar="CATEGORY", help="person, dog, cat, cup, ...")] = "person",
    user: UserOpt = None,
) -> None:
    """Teach the assistant someone (or something) from reference photos. Same name again: update."""

    def work() -> Any:
        for path in photo:
            not_a_folder(str(path), "give photo files: rcmu remember NAME --photo PHOTO --info TEXT")
        return make_assistant().remember(name, info=info, photos=photo, category=category, user=user)

    entity = run(work)
    what = f" ({entity.category}, id {entity.id}) with {len(entity.photos)} reference photo(s)"
    out.print(Text.assemble("remembered ", (entity.name, "bold"), what))


@app.command(cls=Command)
def forget(
    name: Annotated[str, typer.Argument(help="Name or id, as `rcmu list` shows.")],
    user: UserOpt = None,
) -> None:
    """Remove someone from memory, with their reference photos and descriptors."""
    entity = run(lambda: make_assistant().forget(name, user=user))
    out.print(Text.assemble("forgot ", (entity.name, "bold"), f" (id {entity.id})"))


@app.command("list", cls=Command)
def list_(user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """List what the assistant knows."""
    entities = run(lambda: make_assistant().entities(user=user))
    if as_json:
        write(json.dumps([e.model_dump(mode="json") for e in entities], indent=2, ensure_ascii=False))
        return
    if not entities:
        out.print("memory is empty: teach someone with `rcmu remember NAME --photo PHOTO --info TEXT`")
        return
    widest = max(len(e.name) for e in entities) + max(len(e.category) for e in entities)
    if not out.is_terminal or out.width < widest + 50:  # piped, or too narrow for a table: one whole line each
        for e in entities:
            out.print(f"{e.name} ({e.category}, id {e.id}, {len(e.photos)} photo(s)): {e.info}")
        return
    # A name and an id are shown whole (info wraps instead) and as written (Text cells are never markup)
    table = Table(Column("name", no_wrap=True), "category", Column("id", no_wrap=True), "photos", "info")
    for e in entities:
        info = e.info if len(e.info) < 70 else e.info[:67] + "…"
        table.add_row(Text(e.name), Text(e.category), e.id, str(len(e.photos)), Text(info))
    out.print(table)


@app.command(cls=Command)
def ask(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="[PHOTO] QUESTION", help="Photo then question; only the question for a follow-up with --thread."
        ),
    ],
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region",
            "-r",
            metavar="BOX",
            help="x1,y1,x2,y2[:category[:info]] in pixels (repeatable); skips detection. "
            "Refer to them in the question as <region1>, <region2>, ...",
        ),
    ] = None,
    thread: Annotated[
        str | None,
        typer.Option("--thread", "-t", metavar="THREAD", help="Thread id; start it with a photo, then follow up."),
    ] = None,
    user: UserOpt = None,
    context_only: Annotated[
        bool,
        typer.Option("--context-only", help="Stop before the model; print the exact prompt it would receive."),
    ] = False,
    as_json: JsonOpt = False,
    annotate: Annotated[
        Path | None, typer.Option(metavar="PNG", help="Write the photo with boxes and names to this PNG.")
    ] = None,
    library: Annotated[
        bool,
        typer.Option("--library", "-l", help="Ask about your indexed photos (`rcmu index`): give only the question."),
    ] = False,
    limit: Annotated[int, typer.Option(metavar="N", help="With --library: how many photos the model is shown.")] = 4,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Confirm a memory change ('[2] is Rose', 'forget Bella') without asking."),
    ] = False,
) -> None:
    """Ask a question about a photo (or with --library, about your photo library); answers cite [n].

    In a thread, a turn can also change memory: '[2] is my sister Rose Leslie; she adopted Bella in 2022',
    'the one on the left is Rose', 'this is Bella, my dog', 'Rose moved to Lisbon', 'forget Bella',
    'who do you know?'. The change is shown and written only once confirmed (y/N, or --yes)."""
    if library:
        if len(args) != 1 or region or thread:
            run(lambda: fail("with --library give only the question (no photo, --region or --thread)"))
        _answer_library(args[0], limit, user, context_only, as_json, annotate)
        return
    photo, question = run(lambda: photo_and_question(args))
    if photo is None and region:
        run(lambda: fail("--region needs a photo"))
    _answer(question, photo, region or [], thread, user, context_only, as_json, annotate, yes)


@app.command(cls=Command)
def describe(
    photo: Annotated[Path, typer.Argument(help="The photo.")],
    user: UserOpt = None,
    context_only: Annotated[bool, typer.Option("--context-only", help="Print the exact prompt only.")] = False,
    as_json: JsonOpt = False,
    annotate: Annotated[Path | None, typer.Option(metavar="PNG", help="Write the photo with boxes and names.")] = None,
) -> None:
    """Describe a photo, weaving in what memory knows about who is in it (RCID)."""
    from rcmu_agent.prompt import DESCRIBE_QUESTION

    run(lambda: not_a_folder(str(photo), "give one photo file: rcmu describe PHOTO"))
    _answer(DESCRIBE_QUESTION, str(photo), [], None, user, context_only, as_json, annotate)


def _answer(
    question: str,
    photo: str | None,
    specs: list[str],
    thread: str | None,
    user: str | None,
    context_only: bool,
    as_json: bool,
    annotate: Path | None,
    yes: bool = False,
) -> None:
    from rcmu_agent.regions import parse_region_spec

    streamed: list[str] = []
    live = not (as_json or context_only)  # --json prints one object at the end; context has no tokens

    def work() -> Any:
        regions = [parse_region_spec(s) for s in specs]
        config = settings()
        ahead = _see_ahead(photo, config) if photo and not regions else None
        try:
            assistant = make_assistant(config)
            if thread and photo is None:
                thread_exists(assistant, thread)
            if ahead is not None:
                assistant.parts.recognizer.expect(str(photo), ahead[1])
            answer, tokens = asked(assistant, regions)
            if answer.change is not None and answer.change.status == "proposed":
                answer = _confirmed(assistant, answer, thread, user, yes)
            return answer, tokens
        finally:
            if ahead is not None:
                ahead[0].close(wait=False)

    def asked(assistant: Any, regions: list[Any]) -> Any:
        with err.status("thinking…") as status:

            def progress(node: str, update: dict[str, Any]) -> None:
                status.update(_STEPS.get(node, node))

            def token(text: str) -> None:
                if not streamed:
                    status.stop()  # the answer itself now shows progress
                streamed.append(text)
                write(text, end="")

            answer = assistant.ask(
                question,
                photo,
                regions=regions,
                user=user,
                thread_id=thread,
                context_only=context_only,
                on_update=progress,
                on_token=token if live else None,
            )
        if annotate is not None and answer.photo:
            from rcmu_agent.annotate import save_annotated

            save_annotated(assistant.photo(answer.photo, user=user), answer.regions, annotate)
        return answer, _visual_tokens(assistant, answer, user)

    answer, tokens = run(work)
    if as_json:
        write(json.dumps({**answer.summary(), "visual_tokens": tokens}, indent=2, ensure_ascii=False))
        return
    if answer.change is not None:  # a memory change: what was done (or that nothing was)
        write(answer.text)
        _print_regions(answer)
        return
    if context_only:
        write_exact(answer.prompt)
        _print_tokens(tokens)
    elif streamed:
        write("")  # end the streamed line
    else:
        write(answer.text or "(the model returned nothing)")
    _print_regions(answer)


def _confirmed(assistant: Any, proposal: Any, thread: str | None, user: str | None, yes: bool) -> Any:
    """A proposed memory change, confirmed (--yes, or y at the prompt) or declined, then resumed: the
    answer says what was done. Without a thread there is nothing to resume: the proposal is refused."""
    if thread is None:
        raise InvalidInputError(
            f"{proposal.text.rstrip('?')}: a memory change is confirmed in a thread",
            "ask again with --thread T (and --yes to confirm at once)",
        )
    if yes:
        decision = True
    else:
        err.print(proposal.text)
        try:
            decision = typer.confirm("Write this to memory?", default=False, err=True)
        except typer.Abort:  # no answer (end of input): nothing is written
            decision = False
    return assistant.resume(thread, decision, user=user)


def _see_ahead(photo: str, config: Any) -> tuple[Any, Any] | None:
    """Start finding the photo's faces in a second process while this one imports the agent (see
    `Recognizer.expect`), with the settings the answer uses. None on one core, or when the file is
    not one the worker could take."""
    from rcmu_agent.memory.library.workers import PixelPool
    from rcmu_agent.recognizer import Recognizer

    path = Path(photo)
    if (os.cpu_count() or 1) < 2 or not path.is_file() or path.stat().st_size > config.max_image_bytes:
        return None
    pool = PixelPool(Recognizer(config), 1, processes=True)
    return pool, pool.submit(photo, path.read_bytes(), [], whole=False)


def _answer_library(
    question: str, limit: int, user: str | None, context_only: bool, as_json: bool, annotate: Path | None
) -> None:
    def work() -> Any:
        assistant = make_assistant()
        with err.status("searching your photos…"):
            answer = assistant.ask_library(question, user=user, limit=limit, context_only=context_only)
        if annotate is not None and answer.photo:
            from rcmu_agent.annotate import save_annotated

            save_annotated(assistant.photo(answer.photo, user=user), answer.regions, annotate)
        return answer, _visual_tokens(assistant, answer, user)

    answer, tokens = run(work)
    if as_json:
        summary = {**answer.summary(), "visual_tokens": tokens}
        write(json.dumps(summary, default=str, indent=2, ensure_ascii=False))
        return
    if context_only:
        write_exact(answer.prompt)
        _print_tokens(tokens)
    else:
        write(answer.text or "(the model returned nothing)")
    for n, photo in enumerate(answer.photos, start=1):
        err.print(f"photo {n}: {photo.path}")
    for c in answer.photo_citations:
        where = f"{c.name} at {','.join(f'{v:.0f}' for v in c.box)}" if c.box else "the whole photo"
        err.print(f"[{c.index}] {c.path} — {where}")
    _warn_invalid(answer)


def _visual_tokens(assistant: Any, answer: Any, user: str | None) -> int | None:
    """Image tokens the model sees (or would see) for the answer's photo, from the token budget alone."""
    if not answer.photo:
        return None
    from rcmu_agent.visual_budget import visual_tokens

    settings = assistant.settings
    size = assistant.photo(answer.photo, user=user).size
    return visual_tokens(*size, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)


def _print_tokens(tokens: int | None) -> None:
    if tokens is not None:
        err.print(f"visual tokens: {tokens} (budget RCMU_MAX_PIXELS)")


_STEPS = {
    "route": "reading the photo…",
    "detect": "finding faces and objects…",
    "recall": "recognising…",
    "recall_memory": "searching memory…",
    "compose": "writing the context…",
    "answer": "asking the model…",
    "cite": "resolving citations…",
    "propose": "checking the change…",
    "confirm": "writing to memory…",
}


def _print_regions(answer: Any) -> None:
    for entry in answer.regions:
        where = "at " + ",".join(f"{v:.0f}" for v in entry.box) if entry.box else "from memory"
        label = f"[{entry.index}]" if entry.index else "[-]"
        name = entry.name or ("(caller info)" if entry.info else "unknown")
        err.print(f"{label} {name} — {entry.category} {where}")
    if answer.unrecognised and answer.change is None:
        err.print(f'name one in the thread: "[{answer.unrecognised[0]}] is NAME" (rcmu ask --thread T …)')
    _warn_invalid(answer)


def _warn_invalid(answer: Any) -> None:
    if answer.invalid_citations:
        err.print(f"warning: the answer cites {answer.invalid_citations}, which match no context entry")


def _register_subcommands() -> None:
    """Training, evaluation, photo-library and diagnostic commands live beside their code."""
    from rcmu_agent.doctor import register as register_doctor
    from rcmu_agent.evals.cli import register as register_evals
    from rcmu_agent.memory.cli import register as register_memory
    from rcmu_agent.memory.library.cli import register as register_library
    from rcmu_agent.tools.mcp.cli import register as register_mcp
    from rcmu_agent.tools.web.cli import register as register_web
    from rcmu_agent.train.cli import register as register_train

    for register in (register_memory, register_library, register_mcp, register_web, register_train, register_evals):
        register(app)
    register_doctor(app)


_register_subcommands()

if __name__ == "__main__":
    app()
