"""Judges: the model calls behind the metrics, each deciding one fact about one answer.

LLM judges go through `rcmu_agent.llm.LLM` (disk cache keyed by (model, prompt[, image]), retries,
re-asks on off-format replies, a concurrency limit, token counts) with versioned prompts from
`prompts/`. A judge that still fails raises `BackendError`; the runner records that as a judge
failure — never as a wrong answer.

The entailment judge behind citation scores is pluggable: an LLM (which also sees the photo, the
implicit source every sentence may rely on) or a text NLI model loaded with transformers'
`AutoModelForSequenceClassification`. An NLI model cannot see the photo, so for it a sentence without
citations — whose only source is the photo — counts as supported, and cited sentences are judged
against their passages alone; use an LLM judge with vision for the paper's setting.

The visual score is CLIPScore from a CLIP model loaded through transformers (the memory's own
`ImageEmbedder`), computed on the description after an LLM strips the personal context from it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rcmu_agent.citations import parse_citation_numbers
from rcmu_agent.errors import BackendError, ModelLoadError, first_line
from rcmu_agent.evals.metrics import CONSISTENCY, MAX_CITATIONS, SentenceCheck, split_sentences, strip_citations
from rcmu_agent.llm import LLM, load_prompt

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.evals.datasets import ContextRegion

__all__ = [
    "DEFAULT_CLIP",
    "ClipScorer",
    "EntailmentJudge",
    "Judges",
    "LLMEntailment",
    "NLIEntailment",
    "RcidVerdict",
    "entailment_judge",
]

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
PACKAGE = "rcmu_agent.evals"


def _flag(key: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, dict) or not isinstance(value.get(key), bool):
            raise ValueError(f'expected {{"{key}": true|false}}')
        return bool(value[key])

    return check


# ---- entailment ---------------------------------------------------------------------------------
class EntailmentJudge(ABC):
    """Does the photo plus these passages entail the claim?"""

    name: str = "entailment"

    @abstractmethod
    async def entails(
        self, claim: str, passages: Sequence[str], *, image: Image.Image | None, question: str
    ) -> bool: ...


class LLMEntailment(EntailmentJudge):
    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.name = f"llm:{llm.model}"
        self.prompt = load_prompt(PACKAGE, "entailment")

    async def entails(self, claim: str, passages: Sequence[str], *, image: Image.Image | None, question: str) -> bool:
        listed = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(none: only the photo)"
        prompt = self.prompt.render(question=question, passages=listed, claim=claim)
        return await self.llm.json(prompt, _flag("entailed"), image=image)


class NLIEntailment(EntailmentJudge):
    """A text NLI classifier (e.g. an MNLI cross-encoder); premise = the passages joined."""

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        self.model_id = model
        self.device = device
        self.name = f"nli:{model}"
        self._loaded: tuple[Any, Any, int] | None = None
        self._lock = asyncio.Lock()
        self._memo: dict[tuple[str, str], bool] = {}

    def load(self) -> tuple[Any, Any, int]:
        if self._loaded is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            from rcmu_agent.hub import hub_kwargs

            fix = "pass --entailment llm, or a local NLI model directory (AutoModelForSequenceClassification)"
            try:
                hub = hub_kwargs(self.model_id, what="NLI model", fix=fix)
                tokenizer = AutoTokenizer.from_pretrained(self.model_id, **hub)
                model = AutoModelForSequenceClassification.from_pretrained(self.model_id, **hub).to(self.device).eval()
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"cannot load NLI model {self.model_id!r}: {first_line(exc)}", fix) from exc
            labels = {str(v).lower(): int(k) for k, v in model.config.id2label.items()}
            if "entailment" not in labels:
                raise ModelLoadError(f"{self.model_id!r} has no 'entailment' label ({sorted(labels)})", fix)
            self._loaded = (tokenizer, model, labels["entailment"])
        return self._loaded

    def _predict(self, premise: str, claim: str) -> bool:
        import torch

        tokenizer, model, entail = self.load()
        inputs = tokenizer(premise, claim, truncation=True, max_length=512, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = model(**inputs).logits[0]
        return int(logits.argmax()) == entail

    async def entails(self, claim: str, passages: Sequence[str], *, image: Image.Image | None, question: str) -> bool:
        if not passages:
            return True  # the photo is the only source and this judge cannot see it (module docstring)
        premise = " ".join(passages)
        key = (premise, claim)
        if key not in self._memo:
            async with self._lock:  # one forward pass at a time: the model is shared
                self._memo[key] = await asyncio.to_thread(self._predict, premise, claim)
        return self._memo[key]


def entailment_judge(spec: str, llm: LLM | None) -> EntailmentJudge | None:
    """`llm` (the judge LLM) or `nli:<model id or directory>`."""
    if spec == "llm":
        return LLMEntailment(llm) if llm is not None else None
    if spec.startswith("nli:"):
        return NLIEntailment(spec.removeprefix("nli:"))
    raise ModelLoadError(f"unknown entailment judge {spec!r}", "use `llm` or `nli:<model>`")


# ---- CLIPScore ----------------------------------------------------------------------------------
class ClipScorer:
    """Cosine between a photo and a text in a CLIP space (`ImageEmbedder`, transformers CLIPModel)."""

    def __init__(self, model: str = DEFAULT_CLIP, *, device: str = "auto") -> None:
        if "llm2clip" in model.lower():
            raise ModelLoadError(
                f"{model!r} is an LLM2CLIP checkpoint: it needs its own remote code and a separate LLM2Vec text "
                "encoder, which this loader does not support",
                f"use a transformers CLIP model such as {DEFAULT_CLIP} (texts are cut at CLIP's 77 tokens)",
            )
        from rcmu_agent.memory.image_embedder import ImageEmbedder

        self.model = model
        self.embedder = ImageEmbedder(model, device=device)

    def _cosine(self, image: Image.Image, text: str) -> float:
        image_vector = self.embedder.embed([image])[0]
        text_vector = self.embedder.embed_text([text])[0]
        return float(image_vector @ text_vector)

    async def cosine(self, image: Image.Image, text: str) -> float:
        return await asyncio.to_thread(self._cosine, image, text)


# ---- the judges a run uses ----------------------------------------------------------------------
@dataclass
class RcidVerdict:
    k: int
    mentioned: list[int]
    correct: dict[int, bool]
    consistency: dict[int, str]
    visual_text: str | None
    cosine: float | None


def _objects(regions: Sequence[ContextRegion], *, boxes: bool) -> str:
    lines = []
    for n, r in enumerate(regions, start=1):
        where = f" at ({', '.join(str(round(v)) for v in r.box)})" if boxes else ""
        lines.append(f"[{n}] {r.category}{where}: {r.info}")
    return "\n".join(lines)


class Judges:
    """Everything a run asks a model about its answers. Any part may be missing (None)."""

    def __init__(
        self, llm: LLM | None, entailment: EntailmentJudge | None = None, clip: ClipScorer | None = None
    ) -> None:
        self.llm = llm
        self.entailment = entailment
        self.clip = clip
        self._prompts = {
            name: load_prompt(PACKAGE, name) for name in ("rcvqa_judge", "rcid_mention", "rcid_check", "rcid_strip")
        }

    def describe(self) -> dict[str, Any]:
        return {
            "llm": self.llm.model if self.llm else None,
            "entailment": self.entailment.name if self.entailment else None,
            "clip": self.clip.model if self.clip else None,
            "prompts": {name: p.version for name, p in self._prompts.items()},
        }

    def _need_llm(self) -> LLM:
        if self.llm is None:
            raise BackendError("no judge model configured", "pass --judge MODEL (and --judge-url URL)")
        return self.llm

    async def rcvqa(self, question: str, reference: str, prediction: str) -> bool:
        prompt = self._prompts["rcvqa_judge"].render(
            question=question, reference=reference, prediction=prediction or "(empty answer)"
        )
        return await self._need_llm().json(prompt, _flag("correct"))

    async def rcid(self, description: str, regions: Sequence[ContextRegion], image: Image.Image) -> RcidVerdict:
        llm, k = self._need_llm(), len(regions)
        mentioned: list[int] = []
        if k and description.strip():

            def numbers(value: Any) -> list[int]:
                got = value.get("mentioned") if isinstance(value, dict) else None
                if not isinstance(got, list) or not all(isinstance(n, int) and 1 <= n <= k for n in got):
                    raise ValueError(f'expected {{"mentioned": [numbers between 1 and {k}]}}')
                return sorted(set(got))

            prompt = self._prompts["rcid_mention"].render(
                objects=_objects(regions, boxes=False), description=description
            )
            mentioned = await llm.json(prompt, numbers)
        correct: dict[int, bool] = {}
        consistency: dict[int, str] = {}
        if mentioned:

            def checked(value: Any) -> dict[int, tuple[bool, str]]:
                rows = value.get("objects") if isinstance(value, dict) else None
                found = {}
                for row in rows if isinstance(rows, list) else []:
                    usable = isinstance(row, dict) and row.get("n") in mentioned
                    if usable and isinstance(row.get("correct"), bool) and row.get("consistency") in CONSISTENCY:
                        found[int(row["n"])] = (bool(row["correct"]), str(row["consistency"]))
                if set(found) != set(mentioned):
                    raise ValueError(f"expected one verdict for each of {mentioned}")
                return found

            prompt = self._prompts["rcid_check"].render(
                objects=_objects_subset(regions, mentioned),
                description=description,
                numbers=", ".join(map(str, mentioned)),
            )
            for n, (ok, consistent) in (await llm.json(prompt, checked, image=image)).items():
                correct[n], consistency[n] = ok, consistent
        visual_text, cosine = None, None
        if self.clip is not None and description.strip():
            visual_text = await llm.json(self._prompts["rcid_strip"].render(description=description), _visual)
            cosine = await self.clip.cosine(image, visual_text or description)
        return RcidVerdict(k, mentioned, correct, consistency, visual_text, cosine)

    async def citations(
        self, answer: str, passages: dict[int, str], *, image: Image.Image | None, question: str
    ) -> list[SentenceCheck]:
        """ALCE's checks for every sentence of `answer` (see `metrics.SentenceCheck`)."""
        judge = self.entailment
        if judge is None:
            raise BackendError("no entailment judge configured", "pass --judge MODEL or --entailment nli:MODEL")

        async def entails(claim: str, numbers: Sequence[int]) -> bool:
            return await judge.entails(claim, [passages[n] for n in numbers], image=image, question=question)

        async def check(sentence: str) -> SentenceCheck:
            cited = parse_citation_numbers(sentence)[:MAX_CITATIONS]
            claim = strip_citations(sentence)
            if any(n not in passages for n in cited):
                return SentenceCheck(cited, supported=False)
            supported = await entails(claim, cited)
            result = SentenceCheck(cited, supported)
            if supported and len(cited) > 1:
                for c in cited:
                    result.alone[c] = await entails(claim, [c])
                    result.without[c] = (not result.alone[c]) and await entails(claim, [o for o in cited if o != c])
            return result

        return list(await asyncio.gather(*(check(s) for s in split_sentences(answer))))


def _objects_subset(regions: Sequence[ContextRegion], numbers: Sequence[int]) -> str:
    lines = _objects(regions, boxes=True).splitlines()
    return "\n".join(lines[n - 1] for n in numbers)


def _visual(value: Any) -> str:
    text = value.get("description") if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise ValueError('expected {"description": "..."}')
    return text.strip()
