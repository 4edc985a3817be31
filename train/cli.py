"""`rcmu data build|validate`, `rcmu train` and `rcmu merge`; `rcmu_agent.cli` calls `register` once at import.

`rcmu train` takes one flag per `TrainConfig` field, generated from the dataclass so the two can
never disagree; heavy libraries are imported inside the commands, keeping `rcmu --help` fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from rcmu_agent.cli_kit import Command, err, out, run
from rcmu_agent.cli_kit import settings as make_settings

__all__ = ["register"]

TRAIN_HELP = {
    "data": "Instruction records (JSONL; see `rcmu data validate`).",
    "model": "Base Qwen2-VL id or directory.",
    "processor": "Tokenizer + image processor source (default: the model's).",
    "min_pixels": "Fewest pixels an image is resized to (28x28 per visual token) [env RCMU_MIN_PIXELS].",
    "max_pixels": "Most pixels an image is resized to (28x28 per visual token) [env RCMU_MAX_PIXELS].",
    "output_dir": "Checkpoints, metrics.jsonl and the final `adapter/`.",
    "eval_data": "Held-out records for the eval loss (default: hold out --eval-fraction of --data).",
    "eval_fraction": "Share of --data held out when --eval-data is not given.",
    "lora_r": "LoRA rank.",
    "lora_alpha": "LoRA alpha.",
    "lora_dropout": "LoRA dropout.",
    "target_modules": "Regex of the modules LoRA wraps (language model only: the vision tower stays frozen).",
    "lr": "Peak learning rate.",
    "weight_decay": "AdamW weight decay.",
    "scheduler": "transformers scheduler name (cosine, linear, constant_with_warmup, ...).",
    "warmup_ratio": "Warm-up steps as a share of --max-steps.",
    "global_batch": "Examples per optimizer step = per-device batch x accumulation x processes.",
    "per_device_batch": "Examples per forward pass on each device.",
    "max_steps": "Optimizer steps.",
    "max_grad_norm": "Gradient clipping (0: off).",
    "bf16": "bf16 mixed precision (default: when the GPU supports it).",
    "eval_every": "Steps between eval-loss measurements.",
    "save_every": "Steps between checkpoints.",
    "log_every": "Steps between metrics.jsonl rows.",
    "keep_checkpoints": "Newest checkpoints kept (0: all).",
    "seed": "Seed for LoRA init, dropout and data order.",
    "resume": "Continue from the latest checkpoint in --output-dir.",
    "cpu": "Train on the CPU even when a GPU is present.",
    "encode_cache": "Encoded examples kept in memory.",
    "stop_at_step": "Checkpoint and stop at this step (time-boxed jobs); --resume continues.",
}


# Upper-case placeholders saying what to give, as every `rcmu` command spells them; by field where the
# type says too little, else by type (typer would print `<str>`, `<int>`).
TRAIN_METAVARS = {
    "data": "FILE",
    "eval_data": "FILE",
    "output_dir": "FOLDER",
    "model": "MODEL",
    "processor": "MODEL",
    "target_modules": "REGEX",
    "scheduler": "NAME",
}
TYPE_METAVARS: dict[Any, str] = {int: "N", float: "NUMBER", Path: "PATH", str: "TEXT"}


def _metavar(name: str, hint: Any) -> str:
    inner = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    return TRAIN_METAVARS.get(name) or TYPE_METAVARS.get(inner, "VALUE")


def _option_type(hint: Any) -> Any:
    """typer wants `X | None` as Optional and no bare unions."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = next(a for a in args if a is not type(None))
        return typing.Optional[inner]  # noqa: UP045 - typer needs this spelling
    return hint


def _train_command() -> Any:
    from rcmu_agent.train.rcvit import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{f.name.replace('_', '-')}"] if hints[f.name] in (bool, bool | None) else [flag]
        metavar = None if hints[f.name] in (bool, bool | None) else _metavar(f.name, hints[f.name])
        option = typer.Option(*decls, metavar=metavar, help=TRAIN_HELP.get(f.name, ""))
        annotation = typing.cast(Any, Annotated)[_option_type(hints[f.name]), option]
        params.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=annotation)
        )

    def train(**values: Any) -> None:
        """LoRA-tune Qwen2-VL on RCMU records (RCVIT); writes OUTPUT_DIR/adapter for --adapter / RCMU_ADAPTER."""
        from rcmu_agent.train.rcvit import TrainConfig, train

        result = run(lambda: train(TrainConfig(**values)))
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch, one process reports
            return
        for bad in result.skipped_records:
            err.print(f"skipped {bad}")
        eval_part = f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""
        where = f"adapter in {result.adapter}" if result.adapter else "stopped early: continue with --resume"
        out.print(
            f"trained {result.steps} steps: loss {result.loss:.4f}{eval_part}, "
            f"{result.samples_per_second:.1f} samples/s; {where}",
        )

    train.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return train


def _ratio(text: str) -> tuple[int, int]:
    from rcmu_agent.errors import InvalidInputError

    try:
        a, b = (int(v) for v in text.split(":"))
        if a < 0 or b < 0 or a + b == 0:
            raise ValueError
    except ValueError:
        raise InvalidInputError(f"ratio {text!r} is not A:B", "write it like 1:1 or 2:1") from None
    return a, b


def register(app: typer.Typer) -> None:
    """Add this subpackage's commands to `app`."""
    data_app = typer.Typer(help="Build and check RCMU instruction data.", no_args_is_help=True)
    app.add_typer(data_app, name="data")
    app.command("train", cls=Command)(_train_command())
    data_app.command("validate", cls=Command)(_validate_command)
    data_app.command("build", cls=Command)(_build_command)
    app.command("merge", cls=Command)(_merge_command)


def _validate_command(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="Training records (JSONL), an RCMU test set (JSONL), or an RC&P-Bench or Yo'LLaVA folder.",
        ),
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="train | rcmu | rcpbench | yollava [default: recognised from the file].",
        ),
    ] = None,
) -> None:
    """Check every record: boxes inside the image, citations to existing entries, no empty fields.
    Evaluation sets are read as `rcmu eval` reads them (image paths relative to the file)."""
    from rcmu_agent.train.validate import FORMAT_NAMES, validate

    checked = run(lambda: validate(file, format))
    for bad in checked.bad:
        out.print(bad)
    noun = "record(s)" if checked.format == "train" else f"item(s) in {FORMAT_NAMES[checked.format]}"
    out.print(f"{checked.good} good, {len(checked.bad)} bad {noun}")
    if checked.bad and not checked.good and format is None:  # every line bad: the guess may be what is wrong
        err.print(f"checked as {FORMAT_NAMES[checked.format]}; if it is not, give --format train|rcmu|rcpbench|yollava")
    if checked.bad:
        raise typer.Exit(1)


def _build_command(
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="Source records: JSONL, or refer's refs(umd).p / refs JSON.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", metavar="FOLDER", help="Output directory (stage files, export).")
    ],
    llm_model: Annotated[
        str, typer.Option(metavar="MODEL", help="Helper LLM model id on the endpoint.")
    ] = "gpt-4o-mini",
    llm_base_url: Annotated[
        str | None, typer.Option(metavar="URL", help="OpenAI-compatible URL [RCMU_BASE_URL].")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(metavar="FOLDER", help="Folder that relative image paths are under.")
    ] = None,
    instances: Annotated[
        Path | None, typer.Option(metavar="FILE", help="COCO instances.json (default: beside refs).")
    ] = None,
    concurrency: Annotated[int, typer.Option(metavar="N", help="LLM requests in flight.")] = 8,
    ua_ratio: Annotated[str, typer.Option(metavar="A:B", help="Answerable:unanswerable RCVQA records.")] = "1:1",
    score_threshold: Annotated[
        float, typer.Option(metavar="NUMBER", help="Minimum validity/informativeness (1-5).")
    ] = 3.0,
    dedup_threshold: Annotated[
        float, typer.Option(metavar="NUMBER", help="MiniLM cosine for duplicate expressions.")
    ] = 0.9,
    profiles: Annotated[int, typer.Option(metavar="N", help="Personal-info profiles per category.")] = 8,
    citations: Annotated[bool, typer.Option("--citations/--no-citations", help="Cite [n] in answers.")] = True,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed for profile choice and balancing.")] = 0,
) -> None:
    """Generate RCMU instruction data with an LLM, stage by stage (resumable; reruns hit the cache)."""
    from rcmu_agent.jsonl import BadLine
    from rcmu_agent.llm import LLM
    from rcmu_agent.train.data import BuildConfig
    from rcmu_agent.train.data import build as run_build
    from rcmu_agent.train.sources import load_refcoco, load_sources

    def work() -> Any:
        bad: list[BadLine] = []
        if source.suffix == ".jsonl":
            sources = load_sources(source, bad, images=images)
        else:
            sources = list(load_refcoco(source, instances=instances, images=images))
        for line in bad:
            err.print(f"skipped {line}")
        config = BuildConfig(
            out=out_dir, profiles_per_category=profiles, score_threshold=score_threshold,
            dedup_threshold=dedup_threshold, ua_ratio=_ratio(ua_ratio), citations=citations, seed=seed,
        )  # fmt: skip
        llm = LLM.from_settings(
            make_settings(), model=llm_model, base_url=llm_base_url, cache=out_dir / "llm_cache.sqlite",
            concurrency=concurrency,
        )  # fmt: skip
        return run_build(sources, llm, config)

    result = run(work)
    for name, count in result.stages.items():
        out.print(f"{name}: {count.written} written, {count.done_before} already done, {count.rejected} rejected")
    out.print(
        f"exported {result.exported} records to {out_dir / 'rcmu.jsonl'} {result.kinds}; "
        f"LLM calls {int(result.llm['calls'])}, cached {int(result.llm['cached'])}, "
        f"tokens {int(result.llm['prompt_tokens'] + result.llm['completion_tokens'])}",
    )
    for bad in result.invalid:
        err.print(f"invalid {bad}")


def _merge_command(
    adapter: Annotated[Path, typer.Option(metavar="FOLDER", help="Adapter directory written by `rcmu train`.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Where the merged model goes.")],
    base: Annotated[str | None, typer.Option(metavar="MODEL", help="Base model (default: the adapter's).")] = None,
) -> None:
    """Merge a LoRA adapter into its base: full weights + processor files (vLLM / RCMU_MODEL)."""
    from rcmu_agent.train.merge import merge as run_merge

    path = run(lambda: run_merge(adapter, out_dir, base=base))
    out.print(f"merged model written to {path}")
