"""Sanity bounds that cannot be faked: the real graph answers over HTTP (openai backend → loopback
server), a loopback judge decides from the prompt it receives, and the scores must come out at the
bounds a perfect, a refusing and a guessing model imply. Also: judge failures, resume, bad inputs."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    hashed_letter_responder,
    judge_responder,
    prompt_text,
    reference_responder,
    refusal_responder,
)
from conftest import openai_settings

from rcmu_agent import Assistant
from rcmu_agent.evals._shuffle import reshuffled_rcpbench
from rcmu_agent.evals.datasets import RCVQA_KINDS, load_rcmu, load_rcpbench
from rcmu_agent.evals.judges import Judges, LLMEntailment
from rcmu_agent.evals.runner import EvalConfig, Runner, read_records
from rcmu_agent.llm import LLM
from rcmu_agent.testing import FakeServer, Recorded, Reply, serve

pytestmark = pytest.mark.integration  # evaluation runs over loopback servers, dlib, MiniLM


def run_rcmu(
    tmp: Path, data: Path, responder: Callable[[Recorded], Reply], judge_url: str, **config: Any
) -> dict[str, Any]:
    with serve(FakeServer(responder=responder)) as vlm:
        settings = openai_settings(tmp / "home", vlm.url)
        llm = LLM.from_settings(settings, model="judge", base_url=judge_url, cache=tmp / "judge.sqlite")
        runner = Runner(
            Assistant(settings), Judges(llm, LLMEntailment(llm)), EvalConfig("rcmu", data, tmp / "out", **config)
        )
        return runner.run_sync()


@pytest.fixture(scope="module")
def rcmu_data(samples: Path) -> Path:
    return samples / "rcmu" / "test.jsonl"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory, rcmu_data: Path, judge_server: FakeServer) -> Path:
    tmp = tmp_path_factory.mktemp("reference")
    run_rcmu(
        tmp, rcmu_data, reference_responder(load_rcmu(rcmu_data).items), judge_server.url, concurrency=4, progress=False
    )
    return tmp / "out"


def test_reference_answers_score_100(reference_run: Path, rcmu_data: Path) -> None:
    summary = json.loads((reference_run / "summary.json").read_text())
    assert {k: summary["rcvqa"][k]["accuracy"] for k in [*RCVQA_KINDS, "overall"]} == dict.fromkeys(
        [*RCVQA_KINDS, "overall"], 100.0
    )
    assert summary["rcvqa"]["overall"]["n"] == 16 and summary["judge_failures"] == {}
    assert summary["rcid"]["CC"] == 100.0 and summary["rcid"]["n"] == 2
    assert 0 < summary["citation"]["recall"] <= 100
    records = read_records(reference_run / "items.jsonl")
    assert len(records) == len({r.key for r in records}) == len(load_rcmu(rcmu_data).items)
    pair = next(r for r in records if r.id == "rcmu-001")
    assert pair.prompt.startswith("[1]: The information of the person located at <|box_start|>")
    assert pair.prompt.endswith("provide citations for your response.\n" + pair.question)
    assert [h["index"] for h in pair.hits] == [1, 2] and pair.citations == [1]
    assert pair.verdicts["correct"] is True and "citation" in pair.verdicts
    for name in ("summary.md", "plot.png", "run.json"):
        assert (reference_run / name).stat().st_size > 0
    assert "| accuracy | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 |" in (reference_run / "summary.md").read_text()
    run = json.loads((reference_run / "run.json").read_text())
    assert run["judge_stats"]["calls"] > 0 and run["judge_stats"]["prompt_tokens"] > 0


def test_always_refusing_scores_100_on_unanswerable_and_0_on_answerable(
    tmp_path: Path, rcmu_data: Path, judge_server: FakeServer
) -> None:
    summary = run_rcmu(tmp_path, rcmu_data, refusal_responder, judge_server.url, progress=False)
    accuracy = {k: v["accuracy"] for k, v in summary["rcvqa"].items()}
    assert accuracy == {"V2C": 0.0, "C2V": 0.0, "UA-V2C": 100.0, "UA-C2V": 100.0, "overall": 31.25}


def _mc_set(samples: Path, folder: Path, n: int, seed: int = 7) -> Path:
    return reshuffled_rcpbench(samples / "rcpbench", folder, n, seed=seed, prefix="mc-")


def test_guessing_scores_near_chance_on_multiple_choice(tmp_path: Path, samples: Path) -> None:
    n, chance = 200, 0.25
    data = _mc_set(samples, tmp_path / "mc", n)
    with serve(FakeServer(responder=hashed_letter_responder("ABCD"))) as vlm:
        settings = openai_settings(tmp_path / "home", vlm.url)
        config = EvalConfig("rcpbench", data, tmp_path / "out", concurrency=8, rcp_settings=("oracle",), progress=False)
        summary = Runner(Assistant(settings), Judges(None), config).run_sync()
    oracle = summary["rcp"]["oracle"]["overall"]
    assert oracle["n"] == n
    tolerance = 4 * math.sqrt(chance * (1 - chance) / n)  # 4 binomial standard deviations
    assert abs(oracle["accuracy"] / 100 - chance) <= tolerance, oracle


def _rcp_reader(samples: Path) -> Callable[[Recorded], Reply]:
    """A model that answers from the context it is sent: the gold letter if the needed entity's info
    is in the prompt, else "not enough information"."""
    bench = load_rcpbench(samples / "rcpbench")

    def respond(request: Recorded) -> Reply:
        text = prompt_text(request)
        q = next(q for q in bench.questions if q.question in text.rsplit("\n", 1)[-1])
        knows = bench.gallery[q.target].info in text
        return Reply(text=q.answer if knows else f"{q.not_enough_letter}.")

    return respond


def test_rcpbench_gallery_is_recognised_through_the_graph(tmp_path: Path, samples: Path) -> None:
    with serve(FakeServer(responder=_rcp_reader(samples))) as vlm:
        settings = openai_settings(tmp_path / "home", vlm.url)
        config = EvalConfig("rcpbench", samples / "rcpbench", tmp_path / "out", concurrency=4, progress=False)
        summary = Runner(Assistant(settings), Judges(None), config).run_sync()
    assert summary["retrieval_hit_rate"] == 100.0
    for world in ("closed", "open", "oracle"):
        assert summary["rcp"][world]["overall"]["accuracy"] == 100.0
    records = read_records(tmp_path / "out" / "items.jsonl")
    retrieved = [r for r in records if r.setting == "retrieval"]
    assert all(r.target_retrieved for r in retrieved)
    assert all(any(h["name"] for h in r.hits) for r in retrieved)


def test_judge_failures_are_recorded_not_counted_wrong(tmp_path: Path, rcmu_data: Path) -> None:
    def flaky_judge(request: Recorded) -> Reply:
        text = prompt_text(request)
        if text.startswith("[rcvqa_judge") and "lilac tie coach" in text:
            return Reply(text="I would say it is right.")  # off-format every time
        if text.startswith("[rcvqa_judge") and "How old is the cat" in text:
            return Reply(text='{"correct": true}', delay=8)  # slower than the judge's timeout
        return judge_responder(request)

    items = load_rcmu(rcmu_data).items
    with (
        serve(FakeServer(responder=flaky_judge)) as judge,
        serve(FakeServer(responder=reference_responder(items))) as vlm,
    ):
        settings = openai_settings(tmp_path / "home", vlm.url)
        # 2 s: well above a judge call's time on a loaded 2-core machine (0.5 s timed out ordinary calls too)
        judge_settings = openai_settings(tmp_path / "home", vlm.url, request_timeout=2.0)
        llm = LLM.from_settings(judge_settings, model="judge", base_url=judge.url, cache=tmp_path / "judge.sqlite")
        config = EvalConfig("rcmu", rcmu_data, tmp_path / "out", progress=False)
        summary = Runner(Assistant(settings), Judges(llm, LLMEntailment(llm)), config).run_sync()
    assert summary["judge_failures"] == {"rcvqa": 2}
    assert summary["rcvqa"]["overall"] == {"accuracy": 100.0, "n": 14, "judge_failures": 2}
    failed = {r.id: r.judge_failures for r in read_records(tmp_path / "out" / "items.jsonl") if r.judge_failures}
    assert set(failed) == {"rcmu-001", "rcmu-013"}
    assert "off-format" in failed["rcmu-001"][0]["error"] and "did not answer" in failed["rcmu-013"][0]["error"]
    assert "judge failures" in (tmp_path / "out" / "summary.md").read_text()


def test_killed_run_resumes_to_the_same_summary(
    tmp_path: Path, rcmu_data: Path, judge_server: FakeServer, reference_run: Path
) -> None:
    responder = reference_responder(load_rcmu(rcmu_data).items)
    first = run_rcmu(tmp_path, rcmu_data, responder, judge_server.url, limit=5, progress=False)
    assert first["items"] == 5
    items = tmp_path / "out" / "items.jsonl"
    with items.open("a") as handle:
        handle.write('{"key": "rcmu-0')  # killed in the middle of a line
    resumed = run_rcmu(tmp_path, rcmu_data, responder, judge_server.url, concurrency=3, progress=False)
    keys = [r.key for r in read_records(items)]
    assert len(keys) == len(set(keys)) == 18
    assert resumed == json.loads((reference_run / "summary.json").read_text())
    assert json.loads((tmp_path / "out" / "run.json").read_text())["sessions"] == 2


def test_missing_images_and_bad_lines_are_skipped_and_reported(
    tmp_path: Path, rcmu_data: Path, judge_server: FakeServer
) -> None:
    lines = rcmu_data.read_text().splitlines()[:3]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["image"] = str((rcmu_data.parent / row["image"]).resolve())
    rows[1]["image"] = str(tmp_path / "deleted.jpg")
    data = tmp_path / "small.jsonl"
    data.write_text("\n".join([json.dumps(rows[0]), json.dumps(rows[1]), "{oops", json.dumps(rows[2])]) + "\n")
    summary = run_rcmu(
        tmp_path, data, reference_responder(load_rcmu(rcmu_data).items), judge_server.url, progress=False
    )
    assert summary["items"] == 2 and summary["skipped_inputs"] == 2
    problems = json.loads((tmp_path / "out" / "run.json").read_text())["problems"]
    assert problems[0].startswith(f"{data}:2: image ") and "deleted.jpg does not exist" in problems[0]
    assert problems[1].startswith(f"{data}:3: not JSON")
