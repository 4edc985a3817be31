"""`rcmu eval …`: run a benchmark through the agent graph, or compare two runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rcmu_agent.cli_kit import Command, out, run, settings

if TYPE_CHECKING:
    from rcmu_agent.evals.judges import ClipScorer
    from rcmu_agent.evals.runner import Benchmark

__all__ = ["register"]

# Placeholders are upper-case words saying what to give (the type names typer would show say less).
DataOpt = Annotated[
    Path, typer.Option("--data", metavar="PATH", help="Dataset file or folder (see rcmu_agent.evals.datasets).")
]
OutOpt = Annotated[
    Path,
    typer.Option("--out", metavar="FOLDER", help="Run folder: items.jsonl, summary.md/.json, plot.png, run.json."),
]
BackendOpt = Annotated[str | None, typer.Option(metavar="NAME", help="transformers | openai (the model under test).")]
ModelOpt = Annotated[str | None, typer.Option(metavar="MODEL", help="Model id or directory under test.")]
AdapterOpt = Annotated[str | None, typer.Option(metavar="ADAPTER", help="LoRA adapter id or directory.")]
BaseUrlOpt = Annotated[str | None, typer.Option(metavar="URL", help="OpenAI-compatible URL of the model under test.")]
JudgeOpt = Annotated[
    str | None, typer.Option("--judge", metavar="MODEL", help="Judge model id (any OpenAI-compatible model).")
]
JudgeUrlOpt = Annotated[
    str | None, typer.Option("--judge-url", metavar="URL", help="Judge server URL [default: --base-url].")
]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, metavar="N", help="Questions in flight at once.")]
LimitOpt = Annotated[
    int | None, typer.Option(metavar="N", help="Answer at most N new items this session (resume later).")
]
EntailOpt = Annotated[str, typer.Option(metavar="JUDGE", help="Citation entailment judge: llm | nli:MODEL.")]
ClipOpt = Annotated[str, typer.Option(metavar="MODEL", help="CLIP model for RCIDScore's visual part ('' to skip).")]
CLIP_FIX = (
    "give --clip a local directory holding a CLIP model, or --clip '' to run without it "
    "(RCID items then get their context scores but no RCIDScore)"
)


def _evaluate(benchmark: Benchmark, data: Path, out_dir: Path, **options: Any) -> None:
    from rcmu_agent.assistant import Assistant
    from rcmu_agent.evals.judges import DEFAULT_CLIP, ClipScorer, Judges, entailment_judge
    from rcmu_agent.evals.report import render_markdown
    from rcmu_agent.evals.runner import EvalConfig, Runner
    from rcmu_agent.llm import LLM

    config = settings(
        home=out_dir / "home",  # the run's own memory: galleries never mix with the user's
        backend=options["backend"],
        model=options["model"],
        adapter=options["adapter"],
        base_url=options["base_url"],
    )
    judge = options["judge"]
    if benchmark == "rcmu" and not judge:
        from rcmu_agent.errors import InvalidInputError

        raise InvalidInputError("the RCMU tasks are scored by a judge model", "pass --judge MODEL [--judge-url URL]")
    clip = None
    if benchmark == "rcmu" and options.get("clip", DEFAULT_CLIP):
        clip = ClipScorer(options["clip"], device=config.device)
        _load_clip(clip)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a run that cannot start leaves no folder behind
    llm = (
        LLM.from_settings(config, model=judge, base_url=options["judge_url"], cache=out_dir / "judge-cache.sqlite")
        if judge
        else None
    )
    judges = Judges(llm, entailment_judge(options.get("entailment", "llm"), llm) if benchmark == "rcmu" else None, clip)
    extra = {"model": config.model, "backend": config.backend, "adapter": config.adapter, "base_url": config.base_url}
    runner = Runner(
        Assistant(config),
        judges,
        EvalConfig(benchmark, data, out_dir, concurrency=options["concurrency"], limit=options["limit"], extra=extra),
    )
    summary = runner.run_sync()
    for problem in runner.problems:
        out.print(f"skipped {problem}")
    out.print(render_markdown(summary))
    out.print(f"wrote {out_dir}/summary.md, summary.json, plot.png, items.jsonl")


def _load_clip(clip: ClipScorer) -> None:
    """Load the CLIP model now, not at the first description. The embedder's own error names
    RCMU_IMAGE_EMBEDDING_MODEL, the photo library's setting, which does not reach this model: here
    only --clip does, so the fix must name --clip."""
    from rcmu_agent.errors import ModelLoadError, first_line

    try:
        clip.embedder.load()
    except ModelLoadError as exc:
        cause = first_line(exc.__cause__) if exc.__cause__ is not None else exc.problem
        raise ModelLoadError(f"cannot load the CLIP model {clip.model!r} for RCIDScore: {cause}", CLIP_FIX) from exc


def register(app: typer.Typer) -> None:
    """Add `rcmu eval` (rcmu, rcpbench, yollava, compare) to `app`."""
    evals = typer.Typer(
        help="Evaluate the agent graph on the RCMU tasks, RC&P-Bench or Yo'LLaVA; compare two runs.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @evals.command("rcmu", cls=Command)
    def rcmu(
        data: DataOpt,
        out_dir: OutOpt,
        judge: JudgeOpt = None,
        judge_url: JudgeUrlOpt = None,
        backend: BackendOpt = None,
        model: ModelOpt = None,
        adapter: AdapterOpt = None,
        base_url: BaseUrlOpt = None,
        concurrency: ConcurrencyOpt = 4,
        limit: LimitOpt = None,
        entailment: EntailOpt = "llm",
        clip: ClipOpt = "openai/clip-vit-large-patch14",
    ) -> None:
        """RCVQA accuracy (V2C / C2V / UA), RCIDScore and citation F1 on an RCMU test set (JSONL)."""
        options = _options(locals())
        run(lambda: _evaluate("rcmu", data, out_dir, **options))

    @evals.command("rcpbench", cls=Command)
    def rcpbench(
        data: DataOpt,
        out_dir: OutOpt,
        judge: JudgeOpt = None,
        judge_url: JudgeUrlOpt = None,
        backend: BackendOpt = None,
        model: ModelOpt = None,
        adapter: AdapterOpt = None,
        base_url: BaseUrlOpt = None,
        concurrency: ConcurrencyOpt = 4,
        limit: LimitOpt = None,
    ) -> None:
        """RC&P-Bench multiple choice: closed-world, open-world and oracle accuracy (gallery + questions)."""
        options = _options(locals())
        run(lambda: _evaluate("rcpbench", data, out_dir, **options))

    @evals.command("yollava", cls=Command)
    def yollava(
        data: DataOpt,
        out_dir: OutOpt,
        judge: JudgeOpt = None,
        judge_url: JudgeUrlOpt = None,
        backend: BackendOpt = None,
        model: ModelOpt = None,
        adapter: AdapterOpt = None,
        base_url: BaseUrlOpt = None,
        concurrency: ConcurrencyOpt = 4,
        limit: LimitOpt = None,
    ) -> None:
        """Yo'LLaVA personalised QA as RAP packages it (visual and text-only two-option questions)."""
        options = _options(locals())
        run(lambda: _evaluate("yollava", data, out_dir, **options))

    @evals.command("compare", cls=Command)
    def compare(
        run_a: Annotated[Path, typer.Argument(metavar="RUN_A", help="First run folder (e.g. the base model).")],
        run_b: Annotated[Path, typer.Argument(metavar="RUN_B", help="Second run folder (e.g. with an adapter).")],
        write: Annotated[
            Path | None, typer.Option("--write", metavar="FILE", help="Also save the table to this file.")
        ] = None,
    ) -> None:
        """Side-by-side table of two runs' headline numbers with deltas."""

        def action() -> None:
            from rcmu_agent.evals.report import compare as compare_runs
            from rcmu_agent.files import atomic_write

            table = compare_runs(run_a, run_b)
            if write is not None:
                atomic_write(write, table)
            out.print(table)

        run(action)

    app.add_typer(evals, name="eval")


def _options(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("data", "out_dir")}
