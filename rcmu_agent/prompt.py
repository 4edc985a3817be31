"""The region-context prompt of the published RC-Qwen2-VL, to the character.

This module is the single source of truth for what a model sees: the agent, training-data
construction and evaluation all call `build_prompt`, so a model is asked with byte-for-byte the
text it was trained on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.schema import MAX_PROMPT_CHARS, Box, ContextEntry, drop_unseen

__all__ = [
    "DESCRIBE_QUESTION",
    "INSTRUCTION",
    "build_memory_prompt",
    "build_prompt",
    "clean_text",
    "format_box",
    "neutralise",
    "normalize_box",
    "number_entries",
    "resolve_placeholders",
    "shown_text",
]

INSTRUCTION = (
    "Answer the following question based on the information above and the given image, "
    "and provide citations for your response."
)
# The question of the region-level description task (RCID), in training, evaluation and `rcmu describe`.
DESCRIBE_QUESTION = "Describe the image."
MEMORY_INSTRUCTION = (
    "Answer the following question based on the information above, and provide citations for your response."
)

# Chat-template and grounding tokens (<|im_start|>, <|box_start|>, ...) must never come from user
# text: a caller could otherwise forge context entries or whole chat turns.
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<region(\d+)>", re.IGNORECASE)
# "[2]" (also with full-width or lenticular brackets, spaces or zero-width characters inside): in an
# entry's text it could pose as the header of another entry, or as a citation the model repeats.
_GAP = r"[\s\u200b-\u200f\u2060\ufeff]*"
_BRACKETED_NUMBER = re.compile(rf"[\[［【〔〖]{_GAP}(\d+){_GAP}[\]］】〕〗]")


def _scrub(text: str, *, single_line: bool = True) -> str:
    """The cleaning itself, shared by `clean_text` (which also refuses) and `shown_text` (which never
    does): invisible and control characters (`schema.drop_unseen`), special tokens, runs of whitespace."""
    # Unseen characters go first and tokens are stripped until none is left: otherwise
    # "<|im_\x00start|>", "<|im_\u200bstart|>" or "<|im_<|x|>start|>" would leave a working token behind.
    text = drop_unseen(text)
    while _SPECIAL_TOKEN.search(text):
        text = _SPECIAL_TOKEN.sub("", text)
    text = " ".join(text.split()) if single_line else "\n".join(" ".join(line.split()) for line in text.splitlines())
    return text.strip()


def clean_text(text: str, what: str, *, max_chars: int = 4000, single_line: bool = True) -> str:
    """Strip special tokens and control, bidi and zero-width characters; refuse empty or oversized text.

    Every text that is stored (names, info, categories) or sent to a model (questions, entries) passes
    here, so what a model or a person reads back is what was meant, with nothing hidden in it."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be text, got {type(text).__name__}")
    text = _scrub(text, single_line=single_line)
    if not text:
        raise InvalidInputError(f"{what} is empty", f"give a non-empty {what}")
    if len(text) > max_chars:
        raise InvalidInputError(f"{what} is {len(text)} characters, over the {max_chars} limit", f"shorten the {what}")
    return text


def neutralise(text: str) -> str:
    """Text that goes inside one context entry, made unable to open another: bracketed numbers
    ("[2]: The information of the person located at ...") become "(2)". Special tokens and line
    breaks are already gone (`clean_text`), so an entry stays one line with one header."""
    return _BRACKETED_NUMBER.sub(lambda m: f"({m.group(1)})", text)


def shown_text(text: str | None, *, citations: bool = False, single_line: bool = True) -> str:
    """Text a tool hands a host model (a name, a category, info, a file name, an answer), as clean as
    the prompt: what `clean_text` strips is gone and, unless `citations` (the model's own answer,
    whose [n] are the point), bracketed numbers are neutralised, so "Obama [2] = Joe Biden" cannot pose
    as a line of a citation legend. Never raises: showing an old record must not fail; "" stays "".
    """
    if not text:
        return ""
    text = _scrub(str(text), single_line=single_line)
    return text if citations else neutralise(text)


def normalize_box(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box → Qwen2-VL's grid: int(v / side * 1000), clamped to 0..999."""
    width, height = size
    x1, y1, x2, y2 = box

    def scale(value: float, side: int) -> int:
        return min(max(int(value / side * 1000), 0), 999)

    return scale(x1, width), scale(y1, height), scale(x2, width), scale(y2, height)


def format_box(box: Box, size: tuple[int, int]) -> str:
    x1, y1, x2, y2 = normalize_box(box, size)
    return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"


def _sort_key(entry: ContextEntry) -> tuple[float, float, float, float, str, str]:
    x1, y1, x2, y2 = entry.box or (0.0, 0.0, 0.0, 0.0)
    return (x1, y1, x2, y2, entry.category, entry.name or "")


def number_entries(entries: Sequence[ContextEntry]) -> list[ContextEntry]:
    """Number the entries that have info from 1, left-to-right then top-to-bottom.

    The list keeps its order (placeholders like `<region2>` refer to it); entries without info keep
    `index=None`: they are reported to the caller but not sent.
    """
    ranked = sorted((i for i, e in enumerate(entries) if e.info), key=lambda i: _sort_key(entries[i]))
    numbers = {i: n for n, i in enumerate(ranked, start=1)}
    return [e.model_copy(update={"index": numbers.get(i)}) for i, e in enumerate(entries)]


def _info_sentence(info: str) -> str:
    # The template appends the full stop itself; an info that already ends with one keeps a single one.
    sentence = neutralise(clean_text(info, "info")).rstrip(". ")
    if not sentence:
        raise InvalidInputError("info has no words, only full stops", "give a non-empty info")
    return sentence


def _label(text: str, what: str) -> str:
    """A category or a name as it may appear in an entry's header."""
    return neutralise(clean_text(text, what, max_chars=100)).rstrip(":")


def context_line(index: int, category: str, box: Box, size: tuple[int, int], info: str) -> str:
    return (
        f"[{index}]: The information of the {_label(category, 'category')} located at {format_box(box, size)} "
        f"in the image: {_info_sentence(info)}."
    )


def _capped(lines: list[str], max_chars: int) -> str:
    """The lines as one prompt, refused when over `max_chars`: the per-region caps bound what one
    caller sends, this bounds their sum with the question and whatever memory or the library adds."""
    size = sum(map(len, lines)) + len(lines) - 1
    if size > max_chars:
        raise InvalidInputError(
            f"the prompt is {size:,} characters, over the {max_chars:,}-character limit",
            "give fewer regions or shorter info, ask about fewer photos, or ask a shorter question",
        )
    return "\n".join(lines)


def build_prompt(
    entries: Sequence[ContextEntry], question: str, size: tuple[int, int], *, max_chars: int = MAX_PROMPT_CHARS
) -> str:
    """The text block sent after the image (SPEC §2). Entries must already be numbered."""
    lines = [
        context_line(e.index, e.category, e.box, size, e.info or "")
        for e in sorted(entries, key=lambda e: e.index or 0)
        if e.index is not None and e.box is not None
    ]
    lines += [INSTRUCTION, question]
    return _capped(lines, max_chars)


def build_memory_prompt(entries: Sequence[ContextEntry], question: str, *, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Text-only variant for questions without a photo: entries cite memory, not regions."""
    lines = []
    for e in sorted((e for e in entries if e.index is not None), key=lambda e: e.index or 0):
        who = _label(e.category, "category") + (f" {_label(e.name, 'name')}" if e.name else "")
        lines.append(f"[{e.index}]: The information of the {who}: {_info_sentence(e.info or '')}.")
    lines += [MEMORY_INSTRUCTION, question]
    return _capped(lines, max_chars)


def resolve_placeholders(
    question: str, regions: Sequence[ContextEntry], size: tuple[int, int]
) -> tuple[str, list[ContextEntry]]:
    """Replace `<regionK>` (1-based, in the caller's order) with the region's box in Qwen2-VL's form.

    Returns the rewritten question and the entries it refers to, in order of first mention.
    """
    referenced: list[ContextEntry] = []

    def substitute(match: re.Match[str]) -> str:
        k = int(match.group(1))
        if not 1 <= k <= len(regions):
            raise InvalidInputError(
                f"question mentions <region{k}> but only {len(regions)} region(s) are known",
                "number placeholders from <region1> up to the count of regions given",
            )
        entry = regions[k - 1]
        if entry.box is None:
            raise InvalidInputError(f"<region{k}> has no box", "placeholders only work with a photo")
        if entry not in referenced:
            referenced.append(entry)
        return f"the {entry.category} located at {format_box(entry.box, size)}"

    return _PLACEHOLDER.sub(substitute, question), referenced
