"""Each stage of an answer is timed — decode, face detection, resize, vision encoder, prefill, decoding
rate — and the times reach `Answer.timings`, `rcmu ask --json` and the async (server) path alike."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rcmu_agent import Assistant, timings
from rcmu_agent.backends.hf import TransformersVLM
from rcmu_agent.cli import app
from rcmu_agent.images import load_image
from rcmu_agent.settings import Settings
from rcmu_agent.testing import build_tiny_qwen2vl

MODEL_STAGES = {"resize_s", "vision_s", "prefill_s", "first_token_s", "decode_tokens", "tokens_per_s"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("qwen") / "tiny")


def _settings(home: Path, tiny: Path) -> Settings:
    return Settings(
        home=home, model=str(tiny), device="cpu", max_new_tokens=6, object_detector=None, image_embedding_model=None
    )


@pytest.mark.unit
def test_stages_add_up_inside_a_scope_and_vanish_outside() -> None:
    with timings.stage("decode_s"):  # no scope: nothing recorded, nothing raised
        pass
    with timings.collect({"decode_s": 1.0}) as outer:
        with timings.stage("decode_s"):
            pass
        timings.note("decode_tokens", 3)
        with timings.collect() as inner:
            timings.add("vision_s", 2.0)
    assert outer["decode_s"] > 1.0 and outer["decode_tokens"] == 3 and "vision_s" not in outer
    assert inner == {"vision_s": 2.0}
    assert timings.current() is None
    line = timings.describe(
        {"decode_s": 0.2, "detect_s": 0.9, "vision_s": 95.0, "tokens_per_s": 3.1, "decode_tokens": 7}
    )
    assert (
        line
        == "time: decode 0.20 s · face detection 0.90 s · vision encoder 95.00 s · decoding 3.1 tokens/s (7 tokens)"
    )
    assert timings.describe({}) == ""


@pytest.mark.integration
def test_an_answer_carries_every_stage(tiny: Path, tmp_path: Path, small_photos: Path) -> None:
    assistant = Assistant(_settings(tmp_path, tiny))
    photo = (small_photos / "two_people.jpg").read_bytes()
    answer = assistant.ask("Who is on the left?", photo)  # from the photo's bytes, as a server receives it
    got = answer.timings
    assert {"decode_s", "detect_s", *MODEL_STAGES} <= set(got), got
    assert all(value >= 0 for value in got.values())
    assert got["first_token_s"] >= got["vision_s"] + got["prefill_s"] - 0.01  # the stages inside the model's wait
    assert got["decode_tokens"] == 5 and got["tokens_per_s"] > 0  # 6 tokens: the first, then 5 decoded
    assert answer.summary()["timings"] == got

    streamed: list[str] = []
    follow = assistant.ask("Who is on the left?", photo, on_token=streamed.append)  # the streaming path
    assert streamed and set(follow.timings) >= MODEL_STAGES

    context = assistant.ask("Who is on the left?", photo, context_only=True)
    assert {"decode_s", "detect_s"} <= set(context.timings) and not MODEL_STAGES & set(context.timings)


@pytest.mark.integration
def test_the_async_stream_records_into_the_callers_scope(tiny: Path, small_photos: Path) -> None:
    """A server's answer node streams through `astream`: worker threads carry the caller's scope."""
    vlm = TransformersVLM(str(tiny), device="cpu", max_new_tokens=4)
    image = load_image(small_photos / "two_people.jpg")

    async def answer() -> str:
        return "".join([piece async for piece in vlm.astream("Who is on the left?", image)])

    with timings.collect() as clock:
        asyncio.run(answer())
    assert set(clock) >= MODEL_STAGES, clock


@pytest.mark.integration
def test_ask_json_prints_the_timings(tiny: Path, tmp_path: Path, small_photos: Path) -> None:
    env = {"RCMU_HOME": str(tmp_path), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": "",
           "RCMU_MAX_NEW_TOKENS": "4"}  # fmt: skip
    photo = str(small_photos / "two_people.jpg")
    result = CliRunner().invoke(app, ["--model", str(tiny), "ask", photo, "Who is on the left?", "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["timings"]
    assert {"decode_s", "detect_s", *MODEL_STAGES} <= set(shown)


@pytest.mark.integration
def test_an_empty_reply_streams_as_an_empty_answer(
    tiny: Path, tmp_path: Path, small_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose first token is the end token (a random real-size model often writes only tokens
    that decode to nothing) answers with empty text, not LangChain's 'No generations found in stream'."""
    assistant = Assistant(_settings(tmp_path, tiny))
    vlm = assistant.parts.vlm
    assert isinstance(vlm, TransformersVLM)
    arguments = vlm._generation
    end = vlm.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def the_end_first(*args: object, **kwargs: object) -> dict[str, object]:
        everything_else = [i for i in range(len(vlm.tokenizer)) if i != end]
        return {**arguments(*args, **kwargs), "begin_suppress_tokens": everything_else}  # type: ignore[arg-type]

    monkeypatch.setattr(vlm, "_generation", the_end_first)
    pieces: list[str] = []
    answer = assistant.ask(
        "Who is on the left?", (small_photos / "two_people.jpg").read_bytes(), on_token=pieces.append
    )
    assert answer.text == "" and "".join(pieces) == ""
    assert answer.timings["decode_tokens"] == 0
