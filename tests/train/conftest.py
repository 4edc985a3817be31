"""Fixtures for the RCVIT tests: real photos with dlib face regions, a loopback LLM that answers each
stage's prompt from its content, one pipeline run shared by the tests, and a tiny Qwen2-VL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM
from rcmu_agent.llm import LLM
from rcmu_agent.testing import FakeServer, Recorded, Reply, serve
from rcmu_agent.train.data import BuildConfig, BuildResult, build
from rcmu_agent.train.sources import SourceObject, SourceRecord

NAMES = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Harper", "Jordan"]
HOBBIES = ["chess", "sailing", "jazz piano", "pottery", "birdwatching", "baking bread", "cycling", "poetry"]
CITIES = ["Oslo", "Lima", "Kyoto", "Accra", "Quito", "Perth", "Tallinn", "Porto"]
BROKEN, FAILING = "BROKEN-JSON", "SERVER-ERROR"  # markers in expressions that make the LLM misbehave


# ---- the loopback LLM ---------------------------------------------------------------------------
def _prompt(request: Recorded) -> tuple[str, dict[str, Any], str]:
    """(prompt name, its INPUT json, full text) from a chat request."""
    content = request.body["messages"][0]["content"]
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    name = re.match(r"\[(\w+) v\d+\]", text)
    assert name, text[:80]
    return name.group(1), json.loads(text.split("INPUT:\n", 1)[1]), text


def _pronoun(question: str, expression: str) -> str:
    swapped = re.sub(r"\b(its|his|her|their)\b", f"{expression}'s", question, count=1)
    if swapped != question:
        return swapped
    return re.sub(r"\b(it|he|she|they)\b", expression, question, count=1)


def _reply(name: str, data: dict[str, Any]) -> Any:
    """What a careful LLM would answer, derived from the prompt's own input only."""
    if name == "profiles":
        people = range(data["count"])
        return {
            "profiles": [
                {
                    "name": NAMES[i],
                    "info": f"{NAMES[i]} is {21 + i} years old; loves {HOBBIES[i]}; lives in {CITIES[i]}.",
                }
                for i in people
            ]
        }
    if name == "facts":
        facts = [f.strip(" .") for f in data["info"].split(";")]
        return {"info_facts": facts, "visual_facts": data["expressions"]}
    if name == "qa":
        contextual = []
        for fact in data["info_facts"]:
            if "years old" in fact:
                contextual.append({"question": "How old is it?", "answer": f"It is {fact.split(' is ')[1]}."})
            elif fact.startswith("loves"):
                contextual.append({"question": "What does it love?", "answer": f"It loves {fact[6:]}."})
            elif fact.startswith("lives in"):
                contextual.append({"question": "Where does it live?", "answer": f"It lives in {fact[9:]}."})
        contextual.append({"question": "What else is known about it?", "answer": "Nothing much."})  # scored low
        return {
            "visual_qa": [
                {"question": "How can it be recognised?", "answer": f"It is {f}."} for f in data["visual_facts"]
            ],
            "contextual_qa": contextual,
            "context_expressions": [f"the {data['category']} who {f}" for f in data["info_facts"][1:]],
        }
    if name == "unanswerable":
        return {
            "unanswerable_qa": [
                {
                    "question": "What is its favourite food?",
                    "answer": "Cannot be answered. The information does not say.",
                }
            ],
            "absent_expressions": [f"the {data['category']} who works as a pilot"],
        }
    if name == "score":
        return {
            "scores": [
                {"item": it["item"], "validity": 5, "informativeness": 1 if it.get("answer") == "Nothing much." else 4}
                for it in data["items"]
            ]
        }
    if name == "substitute":
        return {"questions": [_pronoun(it["question"], it["expression"]) for it in data["items"]]}
    if name == "describe":
        parts = [f"The {o['category']} is {o['info'].rstrip('.')}." for o in data["objects"]]
        return {"description": " ".join(parts)}
    if name == "cite":
        text = data["description"]
        for o in data["objects"]:
            info = o["info"].rstrip(".")
            text = text.replace(f"{info}.", f"{info} [{o['entry']}].", 1)
        return {"description": text}
    raise AssertionError(f"unknown prompt {name}")


def responder(request: Recorded) -> Reply:
    name, data, text = _prompt(request)
    if FAILING in text:
        return Reply(status=500, body={"object": "error", "message": "model crashed", "code": 500})
    if BROKEN in text:
        return Reply(text="Sure! The facts are: age, hobby, city")  # never JSON
    return Reply(text="```json\n" + json.dumps(_reply(name, data)) + "\n```")


def make_llm(url: str, cache: Path, concurrency: int = 4) -> LLM:
    backend = OpenAICompatibleVLM(model="helper", base_url=url, api_key=None, max_retries=1, retry_wait_max=0.01)
    return LLM(backend, cache=cache, concurrency=concurrency)


# ---- sources: real photos, dlib faces, caller boxes ---------------------------------------------
@pytest.fixture(scope="session")
def source_records(shared_data: Path) -> list[SourceRecord]:
    from rcmu_agent.faces import FaceDetector
    from rcmu_agent.images import load_image

    detector = FaceDetector()
    records = []
    for scene in ("two_people", "obama1", "alex_lacamoire1"):
        path = shared_data / "faces" / "scenes" / f"{scene}.jpg"
        faces = sorted(detector.detect(load_image(path)), key=lambda r: r.box[0])
        assert faces, scene
        sides = ["on the left", "on the right"] if len(faces) == 2 else ["in the photo"]
        objects = [
            SourceObject(box=f.box, category="person", expressions=[f"the man {side}", f"the smiling man {side}"])
            for f, side in zip(faces, sides, strict=False)
        ]
        records.append(SourceRecord(id=scene, image=str(path), objects=objects))
    objects_dir = shared_data / "objects"
    boxes = {
        "chelsea": ("cat", (60, 20, 420, 300), ["the tabby cat", "the tabby cat", "the cat lying down"]),
        "coffee": ("cup", (60, 40, 360, 300), ["the white coffee cup", "the cup on the saucer"]),
        "astronaut": ("person", (60, 10, 470, 510), ["the astronaut in a white suit"]),
    }
    for stem, (category, box, expressions) in boxes.items():
        path = next(objects_dir.glob(f"{stem}.*"))
        records.append(
            SourceRecord(
                id=stem, image=str(path), objects=[SourceObject(box=box, category=category, expressions=expressions)]
            )
        )
    # three that must be rejected, each for its own reason, without stopping the run
    cat = objects_dir / "chelsea.png"
    records.append(
        SourceRecord(
            id="missing", image=str(objects_dir / "nope.jpg"), objects=[SourceObject(box=(0, 0, 5, 5), category="cat")]
        )
    )
    records.append(
        SourceRecord(
            id="broken",
            image=str(cat),
            objects=[SourceObject(box=(1, 1, 50, 50), category="cat", expressions=[BROKEN])],
        )
    )
    records.append(
        SourceRecord(
            id="failing",
            image=str(cat),
            objects=[SourceObject(box=(1, 1, 50, 50), category="cat", expressions=[FAILING])],
        )
    )
    return records


@dataclass
class Built:
    out: Path
    result: BuildResult
    requests: int
    config: BuildConfig


def run_build(sources: list[SourceRecord], out: Path, **config: Any) -> Built:
    cfg = BuildConfig(out=out, **config)
    with serve(FakeServer(responder=responder)) as server:
        result = build(sources, make_llm(server.url, out / "llm_cache.sqlite"), cfg)
        return Built(out, result, len(server.requests), cfg)


@pytest.fixture(scope="session")
def built(source_records: list[SourceRecord], tmp_path_factory: pytest.TempPathFactory) -> Built:
    return run_build(source_records, tmp_path_factory.mktemp("rcmu-data"))


# ---- a tiny Qwen2-VL whose logits can become confident -------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def tiny_visual_budget() -> Iterator[None]:
    """The tiny model's own 4..64 visual tokens, for training and answering alike (both read
    RCMU_MIN_PIXELS / RCMU_MAX_PIXELS); at the defaults (~1,000 tokens a photo) every step is ~15x slower."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RCMU_MIN_PIXELS", str(4 * 28 * 28))
        patch.setenv("RCMU_MAX_PIXELS", str(64 * 28 * 28))
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`build_tiny_qwen2vl`, with the final norm scaled up.

    At init (std 0.02) the frozen 64-wide LM head caps logits near ±1.3, so no adapter could push
    a token's probability near 1 and greedy answers could never be learned; a pretrained model has
    no such cap. Scaling the final RMSNorm weight restores a realistic logit range.
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from rcmu_agent.testing import build_tiny_qwen2vl

    path = build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "qwen2vl")
    model = Qwen2VLForConditionalGeneration.from_pretrained(path)
    with torch.no_grad():
        model.model.language_model.norm.weight.mul_(20.0)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def rebuild() -> Any:
    """Run the whole build again into a directory (e.g. a copy of `built.out`)."""
    return run_build


@pytest.fixture()
def fresh_server() -> Iterator[FakeServer]:
    with serve(FakeServer(responder=responder)) as server:
        yield server
