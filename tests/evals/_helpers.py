"""Loopback servers' responders for the evaluation tests: they decide from the request content alone,
as a real model behind HTTP would, so nothing in the runner can be shortcut."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rcmu_agent.citations import is_refusal
from rcmu_agent.evals.datasets import RcmuItem
from rcmu_agent.testing import Recorded, Reply

SAMPLES = Path(__file__).resolve().parents[2] / "evals" / "samples"
REFUSAL = "Cannot be answered. The information does not say."


def prompt_text(request: Recorded) -> str:
    content = request.body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")


def has_image(request: Recorded) -> bool:
    content = request.body["messages"][-1]["content"]
    return not isinstance(content, str) and any(part.get("type") == "image_url" for part in content)


def reference_responder(items: Sequence[RcmuItem]) -> Callable[[Recorded], Reply]:
    """The VLM that knows the answer key: finds the item whose question ends the prompt and whose infos it holds."""

    def respond(request: Recorded) -> Reply:
        text = prompt_text(request)
        question = text.rsplit("\n", 1)[-1]
        for item in items:
            if item.question == question and all(r.info.rstrip(". ") in text for r in item.regions):
                return Reply(text=item.answer or "")
        return Reply(status=500, body={"message": f"no item for {question!r}"})

    return respond


def refusal_responder(request: Recorded) -> Reply:
    return Reply(text=REFUSAL)


def hashed_letter_responder(letters: str = "ABCD") -> Callable[[Recorded], Reply]:
    """A 'shuffled answers' model: a letter chosen by a hash of the prompt, blind to the answer key."""

    def respond(request: Recorded) -> Reply:
        digest = hashlib.sha256(prompt_text(request).encode()).digest()
        return Reply(text=letters[digest[0] % len(letters)])

    return respond


_WORD = re.compile(r"[a-z]{5,}")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _norm(text: str) -> str:
    return " ".join(re.sub(r"\[\d+\]|[^\w\s]", " ", text.lower()).split())


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}: (.*)$", text, flags=re.MULTILINE)
    assert match, f"{name} missing from judge prompt"
    return match.group(1)


def judge_responder(request: Recorded) -> Reply:
    """A deterministic judge reading the versioned prompts the way an LLM would."""
    text = prompt_text(request)
    header = text.split("\n", 1)[0]
    if header.startswith("[rcvqa_judge"):
        reference, prediction = _field(text, "Reference answer"), _field(text, "Predicted answer")
        refused = is_refusal(reference)
        correct = refused == is_refusal(prediction) and (refused or _norm(reference) == _norm(prediction))
        return Reply(text=json.dumps({"correct": correct}))
    if header.startswith("[entailment"):
        claim = _words(_field(text, "Claim"))
        passages = text.split("Passages:\n", 1)[1].split("\n\nClaim:", 1)[0]
        found = _words(passages)
        return Reply(text=json.dumps({"entailed": bool(claim) and len(claim & found) * 2 >= len(claim)}))
    if header.startswith("[rcid_mention"):
        description = _words(_field(text, "Description"))
        objects = re.findall(r"^\[(\d+)\] [^:]+: (.*)$", text, flags=re.MULTILINE)
        mentioned = [int(n) for n, info in objects if len(_words(info) & description) >= 2]
        return Reply(text=json.dumps({"mentioned": mentioned}))
    if header.startswith("[rcid_check"):
        numbers = [int(n) for n in re.findall(r"\d+", text.rsplit("each of the numbers", 1)[1])]
        body: dict[str, Any] = {"objects": [{"n": n, "correct": True, "consistency": "consistent"} for n in numbers]}
        return Reply(text=json.dumps(body))
    if header.startswith("[rcid_strip"):
        return Reply(text=json.dumps({"description": re.sub(r"\s*\[\d+\]", "", _field(text, "Description"))}))
    return Reply(status=400, body={"message": f"unknown judge prompt {header!r}"})
