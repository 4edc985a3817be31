"""Reading `[n]` citations out of model text and resolving them to context entries.

The published model writes `[2]`, `[1][3]`, `[1, 2]` and `...nights.[3]`; all of them parse. A number
with no entry behind it is kept and reported, because a silent drop would hide a hallucination.

Every region an answer shows has a number a person can say (`number_regions`): the entries sent as
context first (1..k, as the model cites them), then the regions nobody was recognised at (k+1..), so
"[3] is Rose" names the box the user sees. Only the first kind can be cited: the model never saw the
others, so a `[3]` in its text that points at one is reported as invalid, like any other number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rcmu_agent.prompt import number_entries
from rcmu_agent.schema import Citation, ContextEntry

__all__ = ["is_refusal", "number_regions", "parse_citation_numbers", "resolve_citations"]

_GROUP = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_REFUSAL = re.compile(
    r"cannot be answered|can ?not answer|unable to answer|not possible to answer|unanswerable|"
    r"there is not enough information|not enough information|no information (?:about|on|regarding)|"
    r"does not (?:say|provide|mention|specify|include)|is not mentioned|no mention of",
    re.IGNORECASE,
)


def parse_citation_numbers(text: str) -> list[int]:
    """Every cited number, in order of first appearance, without repeats."""
    seen: list[int] = []
    for group in _GROUP.finditer(text):
        for part in re.split(r"[,;]", group.group(1)):
            number = int(part)
            if number not in seen:
                seen.append(number)
    return seen


def number_regions(entries: Sequence[ContextEntry]) -> list[ContextEntry]:
    """The entries numbered as the prompt numbers them (`prompt.number_entries`: those with info, left to
    right), then every region without info numbered after them in the same order. The list keeps its
    order (`<regionK>` refers to it)."""
    numbered = number_entries(entries)
    sent = max((e.index for e in numbered if e.index is not None), default=0)
    unknown = sorted(
        (i for i, e in enumerate(numbered) if e.index is None and e.region is not None),
        key=lambda i: (*numbered[i].region.box, numbered[i].category),  # type: ignore[union-attr]
    )
    extra = {i: n for n, i in enumerate(unknown, start=sent + 1)}
    return [e.model_copy(update={"index": extra[i]}) if i in extra else e for i, e in enumerate(numbered)]


def resolve_citations(text: str, entries: Sequence[ContextEntry]) -> tuple[list[Citation], list[int]]:
    """Citations resolved to entries sent as context, and the numbers that matched none of them."""
    by_index = {e.index: e for e in entries if e.index is not None and e.info}
    citations: list[Citation] = []
    invalid: list[int] = []
    for number in parse_citation_numbers(text):
        entry = by_index.get(number)
        if entry is None:
            invalid.append(number)
            citations.append(Citation(index=number, valid=False))
        else:
            citations.append(Citation(index=number, entity_id=entry.entity_id, name=entry.name, box=entry.box))
    return citations, invalid


def is_refusal(text: str) -> bool:
    """Does the answer decline (the RCVQA 'unanswerable' behaviour)?"""
    return bool(_REFUSAL.search(text))
