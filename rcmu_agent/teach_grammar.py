"""The small English grammar that tells a memory change from a question, with no model at all.

A chat turn is a question unless it has one of these forms (case-insensitive, a trailing full stop or
"please" allowed; see the README, "Teaching in the conversation"):

- `[2] is my sister Rose Leslie; she adopted Bella in 2022` — a region by its number (also `region 2`,
  `#2`, `number 2`), then `is`, an optional short description (`my sister`, `the`, `our`…), the name
  (words starting with a capital letter, `de`/`van`/… between them), and after `;`, `,`, ` - ` or
  ` — ` what to know about them;
- `the one on the left is Rose` — by position (`the one/person/man/woman/dog… on the left/right`,
  `the left/right one`): the caller checks that it is unambiguous;
- `this is Bella, my dog` — `this`/`that`/`he`/`she`/`it`: the photo's only region;
- `Rose moved to Lisbon` — a statement (no question mark, no question word first) whose first words
  are a name: an update, if memory knows that name (the caller checks);
- `forget Bella` — `forget [about] NAME`;
- `who do you know?` — lists the memory (also `who is in your memory`, `list everyone`…).

A `remember` prefix (`remember that [2] is Rose`) is allowed. A category is taken from the words after
`my`/`our`/`a`/`the` (`my dog` → dog); none means "person, or the region's own category".

Pure text: `Intent` says what the words ask for; `rcmu_agent.teach` checks it against the photo and
the memory, and proposes the change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["CATEGORY_WORDS", "Intent", "Target", "parse_turn"]

Action = Literal["remember", "update", "forget", "list"]
Target = int | Literal["left", "right", "only"] | None
"""A region by its `[n]`, by position, or the photo's only one; None: no region (update, forget, list)."""


@dataclass(frozen=True)
class Intent:
    """What a turn asks to change: the words only, not yet checked against photo or memory."""

    action: Action
    name: str | None = None
    info: str | None = None
    category: str | None = None
    target: Target = None


# Words after "my"/"our"/"a"/"the" that name a category (the category memory keeps). People's relations
# ("my sister", "our neighbour") are not here: they are info about a person, the default category.
CATEGORY_WORDS = {
    **{w: "dog" for w in ("dog", "puppy", "pup", "doggy")},
    **{w: "cat" for w in ("cat", "kitten", "kitty")},
    **{
        w: w
        for w in (
            "horse",
            "bird",
            "parrot",
            "rabbit",
            "bunny",
            "hamster",
            "fish",
            "turtle",
            "pony",
            "car",
            "bike",
            "bicycle",
            "motorbike",
            "boat",
            "cup",
            "mug",
            "guitar",
            "piano",
            "teddy",
            "toy",
            "plant",
            "house",
            "watch",
            "bag",
            "backpack",
            "laptop",
            "phone",
            "camera",
        )
    },
}

_LIST = re.compile(
    r"(?:who|whom) (?:all )?(?:do|did) you (?:know|remember)"
    r"|(?:who|what) (?:is|are|'s) in (?:your|my|the) memory"
    r"|(?:list|show)(?: me)? (?:everyone|everybody|everything|who you know|my people|(?:your |my |the )?memory)",
    re.IGNORECASE,
)
_FORGET = re.compile(r"^forget (?:about )?(?P<name>.+)$", re.IGNORECASE)
_NUMBER = r"\[\s*(?P<number>\d+)\s*\]|(?:region|number|no\.?|#)\s*(?P<number2>\d+)"
_WHO = r"(?:one|person|man|woman|guy|girl|boy|lady|kid|child|face|dog|cat|animal|thing)"
_SIDE = (
    rf"(?:the )?{_WHO} (?:on|at|to) the (?P<side>left|right)(?: side)?|(?:the )?(?P<side2>left|right)(?:most)? {_WHO}"
)
_ONLY = r"(?P<only>this(?: one)?|that(?: one)?|he|she|it|this (?:person|dog|cat|guy|man|woman))"
_TEACH = re.compile(
    rf"^(?:{_NUMBER}|{_SIDE}|{_ONLY})\s*(?:is|=|'s|’s|is called|is named)\s+(?P<rest>.+)$", re.IGNORECASE
)
_SPLIT = re.compile(r"\s*(?:;|,|\s-\s|\s—\s|\s–\s|\()\s*")
_PARTICLES = {"de", "da", "di", "del", "der", "van", "von", "la", "le", "bin", "al", "el", "dos", "du", "st."}
_DESCRIBED = re.compile(r"^(?:my|our|his|her|their|the|a|an)(?: [\w'-]+){0,3}$", re.IGNORECASE)
_QUESTION_WORDS = {
    "who", "whom", "whose", "what", "which", "where", "when", "why", "how", "is", "are", "was", "were", "do",
    "does", "did", "can", "could", "would", "will", "should", "has", "have", "tell", "describe", "show",
    "list", "find", "please", "i", "we", "you", "the", "a", "an", "this", "that", "there", "it", "my", "our",
}  # fmt: skip


def parse_turn(text: str) -> Intent | None:
    """The memory change `text` asks for, or None: a question (anything the grammar does not know)."""
    words = " ".join(text.split())
    if _LIST.fullmatch(words.rstrip("?!. ")):
        return Intent("list")
    if words.endswith("?"):
        return None  # "[1] is who?", "is [1] Rose?": questions
    words = re.sub(r"^(?:please,?\s+)?|(?:,?\s+please)?[.!]*$", "", words).strip()
    words = re.sub(r"^remember(?: that)?[,:]?\s+", "", words, flags=re.IGNORECASE)
    if forget := _FORGET.match(words):
        name = forget.group("name").strip(" .!\"'")
        return Intent("forget", name=name) if name else None
    if teach := _TEACH.match(words):
        return _teaching(teach)
    return _update(words)


def _teaching(match: re.Match[str]) -> Intent | None:
    number = match.group("number") or match.group("number2")
    side = match.group("side") or match.group("side2")
    target: Target = int(number) if number else side.lower() if side else "only"  # type: ignore[assignment]
    head, *more = _SPLIT.split(match.group("rest"), maxsplit=1)
    named = _name_and_description(head)
    if named is None:
        return None
    name, described = named
    extra = more[0].rstrip(")").strip() if more else ""
    info = "; ".join(p for p in (described, extra) if p) or None
    return Intent("remember", name=name, info=info, category=_category(f"{described} {extra}"), target=target)


def _name_and_description(head: str) -> tuple[str, str] | None:
    """ "my sister Rose Leslie" → ("Rose Leslie", "my sister"): the name is the trailing run of capitalised
    words; what comes before must be a short description ("my sister", "the", "our dog")."""
    tokens = head.split()
    start = len(tokens)
    while start > 0 and (
        _capitalised(tokens[start - 1]) or (tokens[start - 1].lower() in _PARTICLES and start < len(tokens))
    ):
        start -= 1
    while start < len(tokens) and tokens[start].lower() in _PARTICLES:
        start += 1
    if start == len(tokens):
        return None  # no name: "[1] is happy", "[2] is my sister"
    described = " ".join(tokens[:start])
    if described and not _DESCRIBED.match(described):
        return None  # "the one on the left is wearing a Hat": not a name
    return " ".join(tokens[start:]), described


def _particle(token: str, inside: bool) -> bool:
    """ "de" of "Ana de Armas": part of a name between capitalised words, never its last word."""
    return inside and token.lower() in _PARTICLES


def _capitalised(token: str) -> bool:
    word = token.strip("'\"")
    return bool(word) and word[0].isupper() and word[0].isalpha()


def _category(text: str) -> str | None:
    for word in re.findall(r"\b(?:my|our|a|an|the|his|her|their)\s+(?:[\w-]+\s+)?([\w-]+)", text.lower()):
        if word in CATEGORY_WORDS:
            return CATEGORY_WORDS[word]
    return None


def _update(words: str) -> Intent | None:
    """ "Rose moved to Lisbon": a statement led by a name (the caller checks memory knows it)."""
    tokens = words.split()
    if len(tokens) < 3 or tokens[0].lower().strip(",") in _QUESTION_WORDS or not _capitalised(tokens[0]):
        return None
    end = 1
    while end < len(tokens) and _capitalised(tokens[end]) and end < 4:
        end += 1
    name = re.sub(r"['’]s$", "", " ".join(tokens[:end]).rstrip(","))
    if end == len(tokens) or not name:
        return None
    sentence = words.rstrip(" .!") + "."
    return Intent("update", name=name, info=sentence)
