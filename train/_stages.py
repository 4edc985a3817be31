"""The eight construction stages of the RCMU data (paper §III-B), one async function each.

Each takes one `Work` record and returns it with its stage's fields filled, or raises; the runner in
`data.py` turns a raise into a rejected record. Prompts come from versioned files in `prompts/`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.llm import LLM, Prompt, load_prompt
from rcmu_agent.train._work import (
    QA,
    CitedReply,
    FactsReply,
    ProfilesReply,
    QAReply,
    ScoresReply,
    SubstituteReply,
    UnanswerableReply,
    Work,
    WorkObject,
)
from rcmu_agent.train.records import InstructionRecord, image_size

__all__ = ["STAGES", "BuildConfig", "StageContext"]


@dataclass
class BuildConfig:
    """Settings of a construction run (every one a `rcmu data build` flag)."""

    out: Path = Path("rcmu-data")
    profiles_per_category: int = 8
    score_threshold: float = 3.0  # keep items whose validity and informativeness both reach this
    dedup_threshold: float = 0.9  # MiniLM cosine at which two expressions count as the same
    ua_ratio: tuple[int, int] = (1, 1)  # answerable : unanswerable RCVQA records in the export
    citations: bool = True  # export answers with [n] (False: the no-citation ablation, Table VI)
    seed: int = 0
    chunk: int = 32  # records written per batch of concurrent work


@dataclass
class StageContext:
    llm: LLM
    config: BuildConfig
    _prompts: dict[str, Prompt] = field(default_factory=dict)
    _pools: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    def prompt(self, name: str) -> Prompt:
        if name not in self._prompts:
            self._prompts[name] = load_prompt("rcmu_agent.train", name)
        return self._prompts[name]

    async def ask(self, name: str, reply: type[Any], category: str, payload: Any) -> Any:
        text = self.prompt(name).render(category=category, input=json.dumps(payload, ensure_ascii=False, indent=1))
        return await self.llm.json(text, reply.model_validate)

    async def pool(self, category: str) -> list[Any]:
        """The category's personal-info pool: one LLM call per category, shared by all its objects."""
        if category not in self._pools:
            count = self.config.profiles_per_category
            payload = {"category": category, "count": count}
            ask = self.ask("profiles", ProfilesReply, category, payload)
            self._pools[category] = asyncio.ensure_future(ask)
        reply: ProfilesReply = await asyncio.shield(self._pools[category])
        return list(reply.profiles)


async def each(work: Work, job: Callable[[WorkObject], Awaitable[WorkObject]]) -> Work:
    objects = await asyncio.gather(*(job(o) for o in work.objects))
    return work.model_copy(update={"objects": list(objects)})


# ---- 1. personal info per category ---------------------------------------------------------------
async def personal_info(work: Work, ctx: StageContext) -> Work:
    size = image_size(work.image)
    if isinstance(size, str):
        raise NotFoundError(size, "fix the image path in the source record")
    width, height = size
    for o in work.objects:
        x1, y1, x2, y2 = o.box
        if not (0 <= x1 < x2 <= width + 1 and 0 <= y1 < y2 <= height + 1):
            raise InvalidInputError(f"box {list(o.box)} lies outside the {width}x{height} image", "fix the source")
    rng = random.Random(f"{ctx.config.seed}:{work.id}")
    used: set[str] = set()
    objects = []
    for o in work.objects:
        pool = [p for p in await ctx.pool(o.category) if p.name not in used] or await ctx.pool(o.category)
        profile = rng.choice(pool)
        used.add(profile.name)
        objects.append(o.model_copy(update={"name": profile.name, "info": profile.info}))
    return work.model_copy(update={"objects": objects, "image_size": size})


# ---- 2. structured facts ---------------------------------------------------------------------------
async def facts(work: Work, ctx: StageContext) -> Work:
    async def job(o: WorkObject) -> WorkObject:
        payload = {"category": o.category, "name": o.name, "info": o.info, "expressions": o.expressions}
        reply: FactsReply = await ctx.ask("facts", FactsReply, o.category, payload)
        return o.model_copy(update={"info_facts": reply.info_facts, "visual_facts": reply.visual_facts})

    return await each(work, job)


# ---- 3. visual QA, contextual QA, contextual referring expressions --------------------------------
async def questions(work: Work, ctx: StageContext) -> Work:
    async def job(o: WorkObject) -> WorkObject:
        payload = {"category": o.category, "info_facts": o.info_facts, "visual_facts": o.visual_facts}
        reply: QAReply = await ctx.ask("qa", QAReply, o.category, payload)
        return o.model_copy(update=dict(reply))

    return await each(work, job)


# ---- 4. unanswerable contextual QA -----------------------------------------------------------------
async def unanswerable(work: Work, ctx: StageContext) -> Work:
    async def job(o: WorkObject) -> WorkObject:
        payload = {"category": o.category, "info_facts": o.info_facts}
        reply: UnanswerableReply = await ctx.ask("unanswerable", UnanswerableReply, o.category, payload)
        return o.model_copy(update=dict(reply))

    return await each(work, job)


# ---- 5. validity / informativeness scoring ---------------------------------------------------------
_SCORED = ("visual_qa", "contextual_qa", "context_expressions", "unanswerable_qa", "absent_expressions")


async def score(work: Work, ctx: StageContext) -> Work:
    async def job(o: WorkObject) -> WorkObject:
        items = [(name, i, item) for name in _SCORED for i, item in enumerate(getattr(o, name))]
        if not items:
            return o
        shown = [{"item": k, "kind": n, **(x.model_dump() if isinstance(x, QA) else {"expression": x})}
                 for k, (n, _, x) in enumerate(items, start=1)]  # fmt: skip
        payload = {"category": o.category, "info_facts": o.info_facts, "visual_facts": o.visual_facts, "items": shown}

        def complete(value: Any) -> ScoresReply:
            reply = ScoresReply.model_validate(value)
            if {s.item for s in reply.scores} != set(range(1, len(items) + 1)):
                raise ValueError(f"expected scores for items 1..{len(items)}")
            return reply

        text = ctx.prompt("score").render(category=o.category, input=json.dumps(payload, ensure_ascii=False, indent=1))
        reply = await ctx.llm.json(text, complete)
        good = {s.item for s in reply.scores if min(s.validity, s.informativeness) >= ctx.config.score_threshold}
        kept: dict[str, list[Any]] = {name: [] for name in _SCORED}
        for k, (name, _, item) in enumerate(items, start=1):
            if k in good:
                kept[name].append(item)
        return o.model_copy(update=kept)

    return await each(work, job)


# ---- 6. dedup of referring expressions (MiniLM) ----------------------------------------------------
async def dedup(work: Work, ctx: StageContext) -> Work:
    """Drop generated expressions that could name two objects of the image, and repeats within one object.

    Cross-object checks apply to the generated (contextual) expressions only: the dataset's own visual
    expressions were written to single out their object, and MiniLM scores "the man on the left"
    against "the man on the right" at 0.95 — text similarity cannot judge them.
    """
    from rcmu_agent.memory.text_embedder import TextEmbedder

    found = [(k, f, e) for k, o in enumerate(work.objects) for f in ("expressions", "context_expressions")
             for e in getattr(o, f)]  # fmt: skip
    if not found:
        return work
    vectors = TextEmbedder().embed([e for _, _, e in found])  # in the loop's thread: the model loads once
    similar = vectors @ vectors.T >= ctx.config.dedup_threshold
    drop: set[int] = set()
    for i in range(len(found)):
        for j in range(i + 1, len(found)):
            generated = found[i][1] == found[j][1] == "context_expressions"
            if similar[i, j] and found[i][0] != found[j][0] and generated:
                drop |= {i, j}  # ambiguous: it names more than one object
            elif similar[i, j] and found[i][:2] == found[j][:2] and i not in drop:
                drop.add(j)  # a repeat for the same object: keep the first
    objects = [o.model_copy(update={"expressions": [], "context_expressions": []}) for o in work.objects]
    for i, (k, f, e) in enumerate(found):
        if i not in drop:
            getattr(objects[k], f).append(e)
    return work.model_copy(update={"objects": objects})


# ---- 7. pronoun substitution → V2C, C2V, UA-V2C, UA-C2V -------------------------------------------
def _cited(answer: str, number: int) -> str:
    return f"{answer.rstrip('. ')} [{number}]."


async def substitute(work: Work, ctx: StageContext) -> Work:
    numbers = work.entry_numbers()

    async def job(k: int, o: WorkObject) -> list[InstructionRecord]:
        pairs: list[tuple[str, QA, str]] = []
        for kind, qas, refs in (
            ("V2C", o.contextual_qa, o.expressions),
            ("C2V", o.visual_qa, o.context_expressions),
            ("UA-V2C", o.unanswerable_qa, o.expressions),
            ("UA-C2V", o.visual_qa, o.absent_expressions),
        ):
            if refs:
                pairs += [(kind, qa, refs[i % len(refs)]) for i, qa in enumerate(qas)]
        if not pairs or numbers[k] is None:
            return []
        payload = {"items": [{"question": qa.question, "expression": ref} for _, qa, ref in pairs]}

        def complete(value: Any) -> SubstituteReply:
            reply = SubstituteReply.model_validate(value)
            if len(reply.questions) != len(pairs):
                raise ValueError(f"expected {len(pairs)} questions, got {len(reply.questions)}")
            return reply

        text = ctx.prompt("substitute").render(category=o.category, input=json.dumps(payload, indent=1))
        reply = await ctx.llm.json(text, complete)
        n = int(numbers[k] or 0)
        out = []
        cites: list[int]
        for i, ((kind, qa, ref), question) in enumerate(zip(pairs, reply.questions, strict=True)):
            if kind == "UA-C2V":
                absent = (
                    ref.removeprefix("the ") if ref.startswith(f"the {o.category} ") else f"{o.category} like {ref}"
                )
                answer, cites = f"Cannot be answered. There is no {absent} in the image.", []
            elif kind == "UA-V2C":
                answer, cites = qa.answer, []
            else:
                answer, cites = _cited(qa.answer, n), [n]
            out.append(_record(work, f"{kind}-{k}-{i}", kind, question, answer, cites, "07_substitute"))
        return out

    made = await asyncio.gather(*(job(k, o) for k, o in enumerate(work.objects)))
    return work.model_copy(update={"instructions": [r for group in made for r in group]})


def _record(work: Work, suffix: str, kind: str, question: str, answer: str, cites: list[int], stage: str
            ) -> InstructionRecord:  # fmt: skip
    return InstructionRecord(
        id=f"{work.id}-{suffix}", image=work.image, image_size=work.image_size, regions=work.regions(), kind=kind,
        question=question, answer=answer, citations=cites, source_id=work.id, stage=stage,
    )  # fmt: skip


# ---- 8. RCID, then RCID with citations -------------------------------------------------------------
async def describe(work: Work, ctx: StageContext) -> Work:
    from rcmu_agent.citations import parse_citation_numbers
    from rcmu_agent.prompt import DESCRIBE_QUESTION

    numbers = work.entry_numbers()
    objects = [{"entry": n, "category": o.category, "looks": o.expressions[:2] or o.visual_facts[:2],
                "info": o.info} for n, o in zip(numbers, work.objects, strict=True) if n is not None]  # fmt: skip
    payload = {"caption": work.caption, "objects": objects}
    plain: CitedReply = await ctx.ask("describe", CitedReply, "photo", payload)

    def complete(value: Any) -> CitedReply:
        reply = CitedReply.model_validate(value)
        cited = parse_citation_numbers(reply.description)
        if not cited or not set(cited) <= {n for n in numbers if n is not None}:
            raise ValueError(f"citations {cited} must be entry numbers of the objects")
        return reply

    payload = {"description": plain.description, "objects": objects}
    text = ctx.prompt("cite").render(category="photo", input=json.dumps(payload, ensure_ascii=False, indent=1))
    cited = await ctx.llm.json(text, complete)

    records = [
        _record(work, "RCID", "RCID", DESCRIBE_QUESTION, plain.description, [], "08_describe"),
        _record(work, "RCID-cite", "RCID-cite", DESCRIBE_QUESTION, cited.description,
                parse_citation_numbers(cited.description), "08_describe"),
    ]  # fmt: skip
    return work.model_copy(update={"instructions": records})


Stage = Callable[[Work, StageContext], Awaitable[Work]]
STAGES: list[tuple[str, Stage]] = [
    ("01_info", personal_info),
    ("02_facts", facts),
    ("03_qa", questions),
    ("04_unanswerable", unanswerable),
    ("05_score", score),
    ("06_dedup", dedup),
    ("07_substitute", substitute),
    ("08_describe", describe),
]
