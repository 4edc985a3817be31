"""Reading `[n]` citations out of model text and resolving them to context entries.

The published model writes `[2]`, `[1][3]`, `[1, 2]` and `...nights.[3]`; all of them parse. A number
with no entry behind it is kept and reported, because a silent drop would hide a hallucination.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rcmu_agent.schema import Citation, ContextEntry

__all__ = ["is_refusal", "parse_citation_numbers", "resolve_citations"]

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


def resolve_citations(text: str, entries: Sequence[ContextEntry]) -> tuple[list[Citation], list[int]]:
    """Citations resolved to entries, and the numbers that matched no entry."""
    by_index = {e.index: e for e in entries if e.index is not None}
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
