"""Per-item records → the numbers of the paper's tables (percent), using `metrics` for every formula."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rcmu_agent.evals.datasets import RCVQA_KINDS
from rcmu_agent.evals.metrics import (
    CitationScore,
    SentenceCheck,
    accuracy,
    citation_f1,
    citation_score,
    mean,
    rcid_parts,
)
from rcmu_agent.evals.records import ItemRecord

__all__ = ["latest", "summarize"]


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def latest(records: Iterable[ItemRecord]) -> list[ItemRecord]:
    """One record per key, the last written (a resumed run retries failed predictions)."""
    by_key: dict[str, ItemRecord] = {}
    for record in records:
        by_key.pop(record.key, None)
        by_key[record.key] = record
    return list(by_key.values())


def _accuracy_block(records: Sequence[ItemRecord], verdict: str, kinds: Sequence[str]) -> dict[str, Any]:
    block: dict[str, Any] = {}
    for kind in [*kinds, "overall"]:
        chosen = [r for r in records if kind == "overall" or r.kind == kind]
        value, judged, failures = accuracy(r.verdicts.get(verdict) for r in chosen)
        block[kind] = {"accuracy": _pct(value), "n": judged, "judge_failures": failures}
    return block


def _sentence(data: dict[str, Any]) -> SentenceCheck:
    return SentenceCheck(
        citations=[int(c) for c in data["citations"]],
        supported=bool(data["supported"]),
        alone={int(k): bool(v) for k, v in data.get("alone", {}).items()},
        without={int(k): bool(v) for k, v in data.get("without", {}).items()},
    )


def _citations(records: Sequence[ItemRecord]) -> dict[str, Any]:
    scores: list[CitationScore] = [
        citation_score([_sentence(s) for s in r.verdicts["citation"]["sentences"]])
        for r in records
        if "citation" in r.verdicts
    ]
    recall, precision, f1 = citation_f1(scores)
    return {"recall": _pct(recall), "precision": _pct(precision), "f1": _pct(f1), "n": len(scores)}


def _rcid(records: Sequence[ItemRecord]) -> dict[str, Any]:
    parts = []
    for r in records:
        v = r.verdicts.get("rcid")
        if v is None:
            continue
        parts.append(
            rcid_parts(
                int(v["k"]),
                [int(n) for n in v["mentioned"]],
                {int(k): bool(x) for k, x in v["correct"].items()},
                {int(k): str(x) for k, x in v["consistency"].items()},
                v.get("cosine"),
            )
        )
    failures = sum(1 for r in records if any(f["judge"] == "rcid" for f in r.judge_failures))

    def avg(name: str) -> float | None:
        return _pct(mean(getattr(p, name) for p in parts if getattr(p, name) is not None))

    return {
        "CC": avg("cc"),
        "CA": avg("ca"),
        "CVC": avg("cvc"),
        "ctx": avg("ctx"),
        "CLIPScore": avg("clip"),
        "RCIDScore": avg("score"),
        "n": len(parts),
        "no_context": sum(1 for p in parts if p.ctx is None),
        "judge_failures": failures,
    }


def summarize(benchmark: str, records: Iterable[ItemRecord], problems: Sequence[Any]) -> dict[str, Any]:
    """The summary.json object: counts, judge failures, and the benchmark's table(s)."""
    records = latest(records)
    answered = [r for r in records if r.error is None]
    summary: dict[str, Any] = {
        "benchmark": benchmark,
        "items": len(records),
        "answered": len(answered),
        "prediction_errors": len(records) - len(answered),
        "skipped_inputs": len(problems),
        "judge_failures": dict(Counter(f["judge"] for r in answered for f in r.judge_failures)),
    }
    if benchmark == "rcmu":
        rcvqa = [r for r in answered if r.kind in RCVQA_KINDS]
        summary["rcvqa"] = _accuracy_block(rcvqa, "correct", RCVQA_KINDS)
        summary["rcid"] = _rcid([r for r in answered if r.kind == "RCID"])
        summary["citation"] = _citations(answered)
    elif benchmark == "rcpbench":
        table: dict[str, Any] = {}
        for world, setting in (("closed", "retrieval"), ("open", "retrieval"), ("oracle", "oracle")):
            chosen = [r for r in answered if r.setting == setting]
            if chosen:
                table[world] = _accuracy_block(chosen, world, ("V2C", "C2V"))
        summary["rcp"] = table
        retrieval = [r for r in answered if r.setting == "retrieval" and r.target_retrieved is not None]
        summary["retrieval_hit_rate"] = _pct(mean(float(bool(r.target_retrieved)) for r in retrieval))
    elif benchmark == "yollava":
        summary["yollava"] = _accuracy_block(answered, "correct", ("visual", "text"))
        summary["retrieval_hit_rate"] = _pct(mean(float(bool(r.target_retrieved)) for r in answered))
    return summary
