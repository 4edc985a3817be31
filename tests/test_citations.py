"""Reading `[n]` citations out of model answers (SPEC §2: the forms RC-Qwen2-VL writes)."""

from __future__ import annotations

import pytest

from rcmu_agent.citations import is_refusal, parse_citation_numbers, resolve_citations
from rcmu_agent.schema import Citation, ContextEntry, Region

pytestmark = pytest.mark.unit


def _known(index: int, box: tuple[int, int, int, int], category: str, name: str, info: str) -> ContextEntry:
    return ContextEntry(
        region=Region(box=box, category=category),
        index=index,
        entity_id=f"ent-{name.split()[-1].lower()}",
        name=name,
        info=info,
    )


@pytest.fixture()
def entries() -> list[ContextEntry]:
    return [
        _known(1, (253, 47, 409, 203), "person", "Tom", "Tom, 34"),
        _known(2, (778, 57, 965, 243), "dog", "Bella", "his 2-year-old dog"),
        _known(3, (10, 300, 90, 400), "couch", "the couch", "bought for movie nights"),
        # an unknown face: reported, never numbered, so never citable
        ContextEntry(region=Region(box=(500, 500, 600, 600), category="person"), index=None),
    ]


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("Tom [1] is smiling.", [1]),
        ("They are friends [1][3].", [1, 3]),
        ("Both of them [1, 2] are outside.", [1, 2]),
        ("Both [1,2] and [ 3 ].", [1, 2, 3]),
        ("Both of them [1;2] are outside.", [1, 2]),
        ("Both of them [1 ; 2 , 3] are outside.", [1, 2, 3]),
        ("They sit on the couch they bought for movie nights.[3]", [3]),
        ("Bella, his dog [2], is sleeping.", [2]),
        ("Bella, his 2-year-old dog [2], is lying next to Tom [1].", [2, 1]),
        ("Tom [12] and [007].", [12, 7]),
    ],
)
def test_parse_forms_the_model_writes(text: str, numbers: list[int]) -> None:
    assert parse_citation_numbers(text) == numbers


def test_parse_keeps_first_appearance_order_without_repeats() -> None:
    text = "Bella [2] runs to Tom [1]; Tom [1] throws the ball and Bella [2][3] [1, 2] catches it [3]."
    assert parse_citation_numbers(text) == [2, 1, 3]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Tom is smiling.",
        "See note [a].",
        "Empty brackets [] here.",
        "Range [1-3] and decimals [1.5] are not citations.",
        "Trailing separator [1,] is not a citation.",
        "Leading separator [,1] is not a citation.",
        "Negative [-1] is not a citation.",
        "Round (1) and curly {2} brackets are not citations.",
        "Nested [[x]] and words [one] are not citations.",
    ],
)
def test_things_that_are_not_citations(text: str) -> None:
    assert parse_citation_numbers(text) == []


def test_index_syntax_parses_as_a_number() -> None:
    # Documented behaviour: the parser is purely textual, so "array[0]" yields 0. Entries are 1-based,
    # so resolution must report 0 as invalid rather than let it point at anything.
    assert parse_citation_numbers("array[0] and dict[5]") == [0, 5]


# ---------------------------------------------------------------- resolution


def test_resolve_to_entities_and_boxes(entries: list[ContextEntry]) -> None:
    citations, invalid = resolve_citations("Bella, his 2-year-old dog [2], is with Tom [1].", entries)
    assert invalid == []
    assert citations == [
        Citation(index=2, entity_id="ent-bella", name="Bella", box=(778.0, 57.0, 965.0, 243.0), valid=True),
        Citation(index=1, entity_id="ent-tom", name="Tom", box=(253.0, 47.0, 409.0, 203.0), valid=True),
    ]


def test_resolve_sentence_end_citation(entries: list[ContextEntry]) -> None:
    citations, invalid = resolve_citations("They relax on the couch after movie nights.[3]", entries)
    assert invalid == []
    assert [(c.index, c.entity_id, c.box) for c in citations] == [(3, "ent-couch", (10.0, 300.0, 90.0, 400.0))]


def test_out_of_range_numbers_are_kept_and_reported(entries: list[ContextEntry]) -> None:
    citations, invalid = resolve_citations("Tom [1] owns a cat [4] and a fish [9][4].", entries)
    assert invalid == [4, 9]
    assert [c.index for c in citations] == [1, 4, 9]
    assert [c.valid for c in citations] == [True, False, False]
    assert citations[1] == Citation(index=4, entity_id=None, name=None, box=None, valid=False)


def test_zero_is_invalid_because_entries_are_one_based(entries: list[ContextEntry]) -> None:
    citations, invalid = resolve_citations("Use array[0] here [1].", entries)
    assert invalid == [0]
    assert [(c.index, c.valid) for c in citations] == [(0, False), (1, True)]


def test_unnumbered_entries_cannot_be_cited(entries: list[ContextEntry]) -> None:
    # the unknown face has index None: nothing (in particular not a None key) resolves to it
    citations, invalid = resolve_citations("Someone [4] is there.", entries)
    assert invalid == [4]
    assert citations[0].box is None


def test_no_citations(entries: list[ContextEntry]) -> None:
    assert resolve_citations("Tom is smiling at his dog.", entries) == ([], [])


def test_no_entries_makes_every_citation_invalid() -> None:
    citations, invalid = resolve_citations("Tom [1] and Bella [2].", [])
    assert invalid == [1, 2]
    assert all(not c.valid for c in citations)


def test_memory_entries_resolve_without_box() -> None:
    memory = [ContextEntry(category="person", index=1, entity_id="ent-tom", name="Tom", info="a friend")]
    citations, invalid = resolve_citations("Tom is a friend [1].", memory)
    assert invalid == []
    assert citations == [Citation(index=1, entity_id="ent-tom", name="Tom", box=None, valid=True)]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "text",
    [
        "Cannot be answered. The description does not provide any information about the dog's age.",
        "There is no information about the dog that is sitting on the couch, so it is not possible to answer "
        "this question.",
        "CANNOT BE ANSWERED.",
        "I cannot answer this question based on the information given.",
        "I am unable to answer that.",
        "The question is unanswerable from the image.",
        "There is not enough information to tell.",
        "The context does not mention where Tom works.",
        "Tom's birthday is not mentioned.",
        "There is no mention of a cat.",
        "There is no information regarding the car.",
    ],
)
def test_refusals(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "Bella, his 2-year-old dog [2], is lying on the couch.",
        "Tom [1] and Bella [2] bought the couch for movie nights.[3]",
        "The person on the left is Rose Leslie [1], a Scottish actress.",
        "Yes, Tom [1] is holding the leash.",
        "No, the dog [2] is not wearing a collar.",
        "The information above says Tom [1] is 34 years old.",
        "",
    ],
)
def test_normal_answers_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)
