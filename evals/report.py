"""Reports of a run: summary.json, summary.md in the paper's table layout, plot.png, run.json, and a
side-by-side comparison of two runs (e.g. the base model against an adapter)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rcmu_agent.errors import NotFoundError
from rcmu_agent.files import atomic_write

__all__ = ["compare", "metric_rows", "plot", "render_markdown", "write_reports"]

RCVQA_COLUMNS = ("V2C", "C2V", "UA-V2C", "UA-C2V", "overall")
RCID_COLUMNS = ("CC", "CA", "CVC", "ctx", "CLIPScore", "RCIDScore")


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def metric_rows(summary: dict[str, Any]) -> list[tuple[str, float | None]]:
    """The headline numbers of a summary, labelled, in table order (what plots and comparisons show)."""
    rows: list[tuple[str, float | None]] = []
    if "rcvqa" in summary:
        rows += [(f"RCVQA {k}", summary["rcvqa"][k]["accuracy"]) for k in RCVQA_COLUMNS]
        rows += [(name, summary["rcid"][name]) for name in RCID_COLUMNS]
        rows += [(f"citation {k}", summary["citation"][k]) for k in ("recall", "precision", "f1")]
    for world, block in summary.get("rcp", {}).items():
        rows += [(f"RC&P {world} {k}", block[k]["accuracy"]) for k in ("V2C", "C2V", "overall")]
    if "yollava" in summary:
        rows += [(f"Yo'LLaVA {k}", summary["yollava"][k]["accuracy"]) for k in ("visual", "text", "overall")]
    return rows


def render_markdown(summary: dict[str, Any], info: dict[str, Any] | None = None) -> str:
    """Tables shaped like the paper's (percent); counts and failures underneath."""
    info = info or {}
    title = {"rcmu": "RCMU test set", "rcpbench": "RC&P-Bench", "yollava": "Yo'LLaVA (RAP)"}[summary["benchmark"]]
    model = info.get("model")
    lines = [
        f"# {title}" + (f" — {model}" + (f" + {info['adapter']}" if info.get("adapter") else "") if model else ""),
        "",
    ]
    if "rcvqa" in summary:
        rcvqa = summary["rcvqa"]
        lines += ["## RCVQA accuracy (%)", ""]
        lines += _table(
            ["", *RCVQA_COLUMNS],
            [
                ["accuracy", *(rcvqa[k]["accuracy"] for k in RCVQA_COLUMNS)],
                ["judged", *(rcvqa[k]["n"] for k in RCVQA_COLUMNS)],
            ],
        )
        lines += ["", "## RCID (RCIDScore parts, %)", ""]
        rcid = summary["rcid"]
        lines += _table(["", *RCID_COLUMNS], [["score", *(rcid[k] for k in RCID_COLUMNS)]])
        lines += [f"\n{rcid['n']} descriptions; {rcid['no_context']} without any context object (no ctx score)."]
        cite = summary["citation"]
        lines += ["", "## Citations (ALCE, %)", ""]
        lines += _table(
            ["recall", "precision", "F1", "answers"], [[cite["recall"], cite["precision"], cite["f1"], cite["n"]]]
        )
    if "rcp" in summary:
        lines += ["## RC&P-Bench accuracy (%)", ""]
        rows = [
            [world, *(block[k]["accuracy"] for k in ("V2C", "C2V", "overall")), block["overall"]["n"]]
            for world, block in summary["rcp"].items()
        ]
        lines += _table(["setting", "V2C", "C2V", "overall", "questions"], rows)
        lines += ["", f"Needed entity recognised in the photo: {_fmt(summary.get('retrieval_hit_rate'))} %"]
    if "yollava" in summary:
        block = summary["yollava"]
        lines += ["## Yo'LLaVA personalised QA accuracy (%)", ""]
        lines += _table(
            ["", "visual", "text", "overall"],
            [
                ["accuracy", *(block[k]["accuracy"] for k in ("visual", "text", "overall"))],
                ["questions", *(block[k]["n"] for k in ("visual", "text", "overall"))],
            ],
        )
        lines += ["", f"Concept recognised / recalled: {_fmt(summary.get('retrieval_hit_rate'))} %"]
    failures = summary["judge_failures"]
    lines += [
        "",
        "## Counts",
        "",
        f"- items: {summary['items']} (answered {summary['answered']}, "
        f"prediction errors {summary['prediction_errors']})",
        f"- inputs skipped (malformed lines, missing images): {summary['skipped_inputs']}",
        "- judge failures (left out of the scores, not counted wrong): "
        + (", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "none"),
    ]
    stats = info.get("judge_stats")
    if stats:
        lines.append(
            f"- judge calls: {stats['calls']} ({stats['cached']} cached), tokens {stats['prompt_tokens']} in / "
            f"{stats['completion_tokens']} out"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> Path:
    """A horizontal bar chart of the headline numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, value) for label, value in metric_rows(summary) if value is not None]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(rows), 3) + 1))
    labels = [label for label, _ in rows][::-1]
    values = [value for _, value in rows][::-1]
    ax.barh(labels, values, color="#4c72b0")
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.1f}", va="center", fontsize=8)
    ax.set_xlabel("%")
    ax.set_xlim(0, max([100.0, *values]) * 1.08)
    ax.set_title(f"rcmu eval {summary['benchmark']}")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def write_reports(
    out: Path, benchmark: str, records: Sequence[Any], problems: Sequence[Any], info: dict[str, Any]
) -> dict[str, Any]:
    """summary.json, summary.md, plot.png and run.json in `out`; returns the summary."""
    from rcmu_agent.evals._summary import summarize

    summary = summarize(benchmark, records, problems)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write(out / "summary.md", render_markdown(summary, info))
    plot(summary, out / "plot.png")
    previous = _load(out / "run.json") if (out / "run.json").is_file() else {}
    info = {**info, "sessions": int(previous.get("sessions", 0)) + 1}
    atomic_write(out / "run.json", json.dumps(info, indent=2, default=str) + "\n")
    return summary


def _load(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def compare(run_a: Path, run_b: Path) -> str:
    """A Markdown table of two runs' headline numbers side by side, with B − A."""
    summaries = []
    for run in (Path(run_a), Path(run_b)):
        file = run / "summary.json" if run.is_dir() else run
        if not file.is_file():
            raise NotFoundError(f"{file} does not exist", "pass the --out folders of two finished `rcmu eval` runs")
        summaries.append(_load(file))
    a, b = summaries
    names = [_name(Path(run_a)), _name(Path(run_b))]
    rows_a, rows_b = dict(metric_rows(a)), dict(metric_rows(b))
    labels = list(rows_a) + [label for label in rows_b if label not in rows_a]
    rows = []
    for label in labels:
        va, vb = rows_a.get(label), rows_b.get(label)
        delta = None if va is None or vb is None else round(vb - va, 2)
        rows.append([label, va, vb, (f"{delta:+.2f}" if delta is not None else None)])
    lines = [f"# {names[0]} vs {names[1]}", ""]
    if a.get("benchmark") != b.get("benchmark"):
        lines += [f"(different benchmarks: {a.get('benchmark')} and {b.get('benchmark')})", ""]
    lines += _table(["metric (%)", names[0], names[1], "Δ (B − A)"], rows)
    return "\n".join(lines) + "\n"


def _name(run: Path) -> str:
    info = _load((run if run.is_dir() else run.parent) / "run.json")
    label = info.get("adapter") or info.get("model")
    return f"{run.name} ({label})" if label else run.name
