"""Resumable evaluation runs through the agent graph.

Every prediction is `Assistant.aask` — the compiled graph users run — never a second inference path:
RCMU items send their regions with info as caller regions (compose builds the SPEC §2 prompt from
them); RC&P-Bench and Yo'LLaVA teach their gallery into a run-private user's memory and ask with the
photo alone (the graph detects, recognises and recalls), and RC&P's oracle setting sends the gold
entities' boxes and info as regions instead.

Each finished item is appended (fsynced) to `<out>/items.jsonl` with the prediction, the prompt the
model saw, what recognition found, the judges' verdicts and any judge failure. A killed run started
again skips the item keys already there (items whose prediction failed are tried again), and the
summary is always recomputed from the whole file, so an interrupted-and-resumed run reports exactly
what an uninterrupted one would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rcmu_agent.errors import BackendError, InvalidInputError, RcmuError
from rcmu_agent.evals.datasets import (
    ANSWERABLE_KINDS,
    RCVQA_KINDS,
    GalleryEntity,
    Problem,
    RcmuItem,
    RcpQuestion,
    YollavaConcept,
    YollavaQuestion,
    load_rcmu,
    load_rcpbench,
    load_yollava,
)
from rcmu_agent.evals.judges import Judges
from rcmu_agent.evals.metrics import citation_score, extract_letter, rcp_correct
from rcmu_agent.evals.records import ItemRecord, read_records
from rcmu_agent.jsonl import JsonlWriter
from rcmu_agent.schema import Answer, Region

__all__ = ["BENCHMARKS", "MC_INSTRUCTION", "EvalConfig", "ItemRecord", "Runner", "mc_question", "read_records"]

log = logging.getLogger(__name__)
Benchmark = Literal["rcmu", "rcpbench", "yollava"]
BENCHMARKS: tuple[str, ...] = ("rcmu", "rcpbench", "yollava")
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
Job = tuple[str, Callable[[], Awaitable["ItemRecord"]]]


@dataclass
class EvalConfig:
    benchmark: Benchmark
    data: Path
    out: Path
    concurrency: int = 4
    user: str = "eval"  # whose memory holds the gallery (RC&P-Bench, Yo'LLaVA)
    rcp_settings: tuple[str, ...] = ("retrieval", "oracle")
    limit: int | None = None  # answer at most this many new items, then stop (as if killed)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in run.json (model, adapter, ...)


def mc_question(question: str, options: dict[str, str]) -> str:
    lines = [question, *(f"{letter}. {text}" for letter, text in sorted(options.items())), MC_INSTRUCTION]
    return "\n".join(lines)


def _hits(answer: Answer) -> list[dict[str, Any]]:
    return [entry.summary() for entry in answer.regions]


class Runner:
    """One benchmark, one output folder. `await run()` (or `run_sync()`) returns the summary dict."""

    def __init__(self, assistant: Any, judges: Judges, config: EvalConfig) -> None:
        if config.concurrency < 1:
            raise InvalidInputError(f"concurrency must be at least 1, got {config.concurrency}", "pass 1 or more")
        self.assistant = assistant
        self.judges = judges
        self.config = config
        self.items_path = Path(config.out) / "items.jsonl"
        self.problems: list[Problem] = []
        self._entity_ids: dict[str, str] = {}

    def run_sync(self) -> dict[str, Any]:
        return asyncio.run(self.run())

    async def run(self) -> dict[str, Any]:
        from rcmu_agent.evals.report import write_reports

        config, started = self.config, time.time()
        Path(config.out).mkdir(parents=True, exist_ok=True)
        jobs = await self._jobs()
        done = {r.key for r in read_records(self.items_path) if r.error is None}
        pending = [(key, job) for key, job in jobs if key not in done]
        if config.limit is not None:
            pending = pending[: config.limit]
        await self._answer_all(pending)
        records = read_records(self.items_path)
        info = {
            "benchmark": config.benchmark,
            "data": str(Path(config.data).resolve()),
            "concurrency": config.concurrency,
            "items_total": len(jobs),
            "answered_this_session": len(pending),
            "seconds_this_session": round(time.time() - started, 3),
            "judges": self.judges.describe(),
            "judge_stats": self.judges.llm.stats.as_dict() if self.judges.llm else None,
            "problems": [str(p) for p in self.problems],
            **config.extra,
        }
        return write_reports(Path(config.out), config.benchmark, records, self.problems, info)

    async def _answer_all(self, pending: list[Job]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from rcmu_agent.evals._progress import Rate as _Rate

        limit = asyncio.Semaphore(self.config.concurrency)

        async def bounded(job: Callable[[], Awaitable[ItemRecord]]) -> ItemRecord:
            async with limit:
                return await job()

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with (
            Progress(*columns, console=Console(stderr=True), disable=not self.config.progress) as bar,
            JsonlWriter(self.items_path) as writer,
        ):
            task_id = bar.add_task(f"eval {self.config.benchmark}", total=len(pending))
            tasks = [asyncio.ensure_future(bounded(job)) for _, job in pending]
            try:
                for finished in asyncio.as_completed(tasks):
                    writer.write(await finished)
                    bar.advance(task_id)
            finally:
                for task in tasks:
                    task.cancel()

    # ---- jobs per benchmark ----------------------------------------------------------------------
    async def _jobs(self) -> list[Job]:
        benchmark, data = self.config.benchmark, Path(self.config.data)
        if benchmark == "rcmu":
            loaded = load_rcmu(data)
            self.problems = loaded.problems
            return [(item.id, self._bind(self._rcmu, item)) for item in loaded.items]
        if benchmark == "rcpbench":
            bench = load_rcpbench(data)
            self.problems = bench.problems
            if "retrieval" in self.config.rcp_settings:
                await self._teach(list(bench.gallery.values()))
            unknown = set(self.config.rcp_settings) - {"retrieval", "oracle"}
            if unknown:
                raise InvalidInputError(f"unknown RC&P setting(s) {sorted(unknown)}", "use retrieval and/or oracle")
            return [
                (f"{q.id}@{setting}", self._bind(self._rcp, q, bench.gallery, setting))
                for q in bench.questions
                for setting in self.config.rcp_settings
            ]
        if benchmark == "yollava":
            dataset = load_yollava(data)
            self.problems = dataset.problems
            await self._teach(list(dataset.concepts.values()))
            return [(q.id, self._bind(self._yollava, q, dataset.concepts)) for q in dataset.questions]
        raise InvalidInputError(f"unknown benchmark {benchmark!r}", f"use one of {', '.join(BENCHMARKS)}")

    @staticmethod
    def _bind(fn: Callable[..., Awaitable[ItemRecord]], *args: Any) -> Callable[[], Awaitable[ItemRecord]]:
        return lambda: fn(*args)

    async def _teach(self, gallery: list[GalleryEntity] | list[YollavaConcept]) -> None:
        """The gallery into the run user's memory through the import path (`memory.transfer`): what a
        resumed run finds there already is skipped, so it is loaded once."""
        from rcmu_agent.memory.transfer import ImportRow, import_rows

        assistant, user = self.assistant, self.config.user
        rows = [
            ImportRow(
                f"gallery {getattr(e, 'id', None) or getattr(e, 'key', e.name)}",
                e.name,
                e.info,
                e.category,
                tuple(e.photo_paths),
            )
            for e in gallery
        ]

        def teach() -> None:
            # a small gallery is faster in this process than with worker processes to start
            report = import_rows(assistant.parts.recognizer, rows, user=user, workers=0 if len(rows) < 64 else None)
            if report.failed:
                raise InvalidInputError(f"the gallery could not be loaded: {report.failed[0]}", "fix that entity")
            self._entity_ids.update({e.name: e.id for e in assistant.parts.memory.entities(user)})

        await asyncio.to_thread(teach)

    async def _ask(self, record: ItemRecord, question: str, photo: Path | None, **kwargs: Any) -> Answer | None:
        started = time.perf_counter()
        try:
            answer: Answer = await self.assistant.aask(question, photo, **kwargs)
        except RcmuError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return None
        finally:
            record.seconds = round(time.perf_counter() - started, 4)
        record.prediction = answer.text
        record.unanswerable = answer.unanswerable
        record.citations = [c.index for c in answer.citations]
        record.invalid_citations = list(answer.invalid_citations)
        record.prompt = answer.prompt
        record.hits = _hits(answer)
        return answer

    async def _judge(self, record: ItemRecord, name: str, call: Awaitable[Any]) -> Any:
        """A judge's verdict, or None with the failure recorded (never counted as a wrong answer)."""
        try:
            return await call
        except BackendError as exc:
            record.judge_failures.append({"judge": name, "error": str(exc)[:500]})
            return None

    async def _rcmu(self, item: RcmuItem) -> ItemRecord:
        record = ItemRecord(
            key=item.id,
            id=item.id,
            benchmark="rcmu",
            kind=item.kind,
            question=item.question,
            reference=item.answer,
            image=str(item.image_path),
        )
        regions = [r.region() for r in item.regions]
        answer = await self._ask(record, item.question, item.image_path, regions=regions)
        if answer is None:
            return record
        image = await asyncio.to_thread(self.assistant.parts.photos.load, str(item.image_path))
        judges, text = self.judges, answer.text
        if item.kind in RCVQA_KINDS:
            verdict = await self._judge(record, "rcvqa", judges.rcvqa(item.question, item.answer or "", text))
            if verdict is not None:
                record.verdicts["correct"] = verdict
        if item.kind in (*ANSWERABLE_KINDS, "RCID"):
            passages = {e.index: e.info for e in answer.regions if e.index is not None and e.info}
            call = judges.citations(text, passages, image=image, question=item.question)
            checks = await self._judge(record, "citation", call)
            if checks is not None:
                score = citation_score(checks)
                record.verdicts["citation"] = {
                    "sentences": [asdict(c) for c in checks],
                    "recall": score.recall,
                    "precision": score.precision,
                }
        if item.kind == "RCID":
            rcid = await self._judge(record, "rcid", judges.rcid(text, item.regions, image))
            if rcid is not None:
                record.verdicts["rcid"] = asdict(rcid)
        return record

    async def _rcp(self, q: RcpQuestion, gallery: dict[str, GalleryEntity], setting: str) -> ItemRecord:
        record = ItemRecord(
            key=f"{q.id}@{setting}",
            id=q.id,
            benchmark="rcpbench",
            kind=q.kind,
            setting=setting,
            question=q.question,
            reference=q.options[q.answer],
            image=str(q.image_path),
            gold=q.answer,
        )
        text = mc_question(q.question, q.options)
        if setting == "oracle":
            regions = [
                Region(box=e.box, category=gallery[e.entity].category, info=gallery[e.entity].info) for e in q.entities
            ]
            answer = await self._ask(record, text, q.image_path, regions=regions)  # no memory: nothing to recall
        else:
            answer = await self._ask(record, text, q.image_path, user=self.config.user)
        if answer is None:
            return record
        record.choice = extract_letter(answer.text, q.options)
        if setting == "oracle":
            record.verdicts["oracle"] = record.choice == q.answer
            return record
        target = self._entity_ids.get(gallery[q.target].name)
        record.target_retrieved = any(e.entity_id == target for e in answer.regions if e.entity_id)
        nei = q.not_enough_letter
        for world, open_world in (("closed", False), ("open", True)):
            record.verdicts[world] = rcp_correct(
                record.choice, q.answer, not_enough=nei, retrieved=record.target_retrieved, open_world=open_world
            )
        return record

    async def _yollava(self, q: YollavaQuestion, concepts: dict[str, YollavaConcept]) -> ItemRecord:
        record = ItemRecord(
            key=q.id,
            id=q.id,
            benchmark="yollava",
            kind=q.kind,
            setting="retrieval",
            question=q.question,
            reference=q.options[q.answer],
            image=str(q.image_path) if q.image_path else None,
            gold=q.answer,
        )
        answer = await self._ask(record, mc_question(q.question, q.options), q.image_path, user=self.config.user)
        if answer is None:
            return record
        record.choice = extract_letter(answer.text, q.options)
        target = self._entity_ids.get(concepts[q.concept].name)
        record.target_retrieved = any(e.entity_id == target for e in answer.regions if e.entity_id)
        record.verdicts["correct"] = record.choice == q.answer
        return record
