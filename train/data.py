"""The RCMU construction pipeline: source records → eight LLM stages → instruction records.

Every stage writes `<out>/<NN>_<stage>.jsonl` (one line per source image, appended durably with
`JsonlWriter`) and skips source ids already in it, so a killed run picks up where it stopped and a
rerun pays nothing (the LLM's disk cache answers repeated prompts). A record that cannot go on —
missing image, an LLM that keeps failing or answering off-format — is logged to `<out>/rejected.jsonl`
with its stage and reason and counted; the run carries on. `<out>/manifest.json` holds the counts per
stage and the LLM's token/call statistics; `<out>/rcmu.jsonl` is the final, validated export.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rcmu_agent.errors import RcmuError
from rcmu_agent.jsonl import BadLine, JsonlWriter, read_models, write_jsonl
from rcmu_agent.llm import LLM
from rcmu_agent.train._checkpoint import DiskFullError, disk_full, write_json
from rcmu_agent.train._stages import STAGES, BuildConfig, Stage, StageContext
from rcmu_agent.train._work import Work, WorkObject
from rcmu_agent.train.records import UNANSWERABLE, InstructionRecord, validate_file
from rcmu_agent.train.sources import SourceRecord

__all__ = ["BuildConfig", "BuildResult", "DiskFullError", "balance", "build", "run_stage", "to_work"]

log = logging.getLogger(__name__)
EXPORT = "rcmu.jsonl"


@dataclass
class StageCount:
    inputs: int = 0
    done_before: int = 0
    written: int = 0
    rejected: int = 0


@dataclass
class BuildResult:
    out: Path
    stages: dict[str, StageCount] = field(default_factory=dict)
    exported: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    invalid: list[BadLine] = field(default_factory=list)
    llm: dict[str, float] = field(default_factory=dict)


def to_work(source: SourceRecord) -> Work:
    objects = [WorkObject(box=o.box, category=o.category, expressions=o.expressions) for o in source.objects]
    return Work(id=source.id, image=source.image, caption=source.caption, objects=objects, stage="00_source")


async def run_stage(name: str, stage: Stage, inputs: list[Work], ctx: StageContext, count: StageCount) -> list[Work]:
    """Run one stage over `inputs`, resumably; returns its outputs in input order."""
    from tqdm.auto import tqdm

    out = ctx.config.out
    path = out / f"{name}.jsonl"
    writer = JsonlWriter(path)  # opening first cuts a line torn by a kill
    done = {w.id: w for _, w in read_models(path, Work)}
    todo = [w for w in inputs if w.id not in done]
    count.inputs, count.done_before = len(inputs), len(inputs) - len(todo)
    rejected = JsonlWriter(out / "rejected.jsonl")
    bar = tqdm(total=len(inputs), initial=count.done_before, desc=name, unit="img", disable=False, leave=False)

    async def guarded(work: Work) -> Work | str:
        try:
            result = await stage(work, ctx)
        except (RcmuError, ValueError, OSError) as exc:  # BackendError, LLMFormatError, bad image, bad box
            return f"{type(exc).__name__}: {exc}"
        return result.model_copy(update={"stage": name})

    try:
        for start in range(0, len(todo), ctx.config.chunk):
            chunk = todo[start : start + ctx.config.chunk]
            results = await asyncio.gather(*(guarded(w) for w in chunk))
            for work, result in zip(chunk, results, strict=True):
                if isinstance(result, str):
                    count.rejected += 1
                    log.warning("%s: %s rejected: %s", name, work.id, result)
                    rejected.write({"stage": name, "source_id": work.id, "image": work.image, "reason": result})
                else:
                    writer.write(result)
                    count.written += 1
                    done[work.id] = result
            bar.update(len(chunk))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(path, exc, "every record written before is kept") from exc
        raise
    finally:
        bar.close()
        writer.close()
        rejected.close()
    return [done[w.id] for w in inputs if w.id in done]


def balance(records: list[InstructionRecord], ratio: tuple[int, int], seed: int) -> list[InstructionRecord]:
    """Subsample RCVQA so answerable : unanswerable = ratio (the paper's best is 1:1); others all kept."""
    a, u = ratio
    ua = [r for r in records if r.kind in UNANSWERABLE]
    ans = [r for r in records if r.kind in ("V2C", "C2V")]
    if a == 0 or u == 0:
        keep_ans, keep_ua = (len(ans) if a else 0), (len(ua) if u else 0)
    else:  # the largest exact multiple of the ratio that both sides can supply
        keep_ua = min(len(ua), len(ans) * u // a)
        keep_ans = keep_ua * a // u
        keep_ua = keep_ans * u // a
    rng = random.Random(seed)
    chosen = {r.id for r in rng.sample(ans, keep_ans)} | {r.id for r in rng.sample(ua, keep_ua)}
    return [r for r in records if r.kind not in ("V2C", "C2V", *UNANSWERABLE) or r.id in chosen]


def _strip_citations(record: InstructionRecord) -> InstructionRecord:
    import re

    answer = re.sub(r"\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]", "", record.answer).strip()
    return record.model_copy(update={"answer": answer, "citations": []})


def export(works: dict[str, list[Work]], config: BuildConfig) -> list[InstructionRecord]:
    """Instruction records of the last two stages: one RCID flavour (cited or not), RCVQA balanced."""
    records = [r for name in ("07_substitute", "08_describe") for w in works.get(name, []) for r in w.instructions]
    drop = "RCID" if config.citations else "RCID-cite"
    records = [r for r in records if r.kind != drop]
    if not config.citations:
        records = [_strip_citations(r) for r in records]
    return balance(records, config.ua_ratio, config.seed)


async def abuild(sources: list[SourceRecord], llm: LLM, config: BuildConfig) -> BuildResult:
    config.out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(llm=llm, config=config)
    result = BuildResult(config.out)
    works: dict[str, list[Work]] = {}
    current = [to_work(s) for s in sources]
    for name, stage in STAGES:
        count = result.stages[name] = StageCount()
        current = works[name] = await run_stage(name, stage, current, ctx, count)
        log.info("%s: %s", name, count)
    records = export(works, config)
    path = config.out / EXPORT
    try:
        result.exported = write_jsonl(path, records)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(path, exc, "every record written before is kept") from exc
        raise
    report = validate_file(path)
    result.invalid = report.bad
    for r in records:
        result.kinds[r.kind] = result.kinds.get(r.kind, 0) + 1
    result.llm = llm.stats.as_dict()
    manifest = {
        "stages": {k: asdict(v) for k, v in result.stages.items()},
        "exported": result.exported,
        "kinds": result.kinds,
        "invalid": [str(b) for b in report.bad],
        "llm": {"model": llm.model, **result.llm},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
    }
    write_json(config.out / "manifest.json", manifest)
    return result


def build(sources: list[SourceRecord], llm: LLM, config: BuildConfig) -> BuildResult:
    """Run every stage (resuming whatever is already on disk), export and validate."""
    return asyncio.run(abuild(sources, llm, config))
