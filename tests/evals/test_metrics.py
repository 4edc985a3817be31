"""The metric arithmetic against cases worked out by hand (SPEC §4), including every N = 0 branch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from PIL import Image

from rcmu_agent.evals.judges import EntailmentJudge, Judges
from rcmu_agent.evals.metrics import (
    CitationScore,
    SentenceCheck,
    accuracy,
    citation_f1,
    citation_score,
    clip_score,
    extract_letter,
    harmonic_mean,
    rcid_parts,
    rcp_correct,
    split_sentences,
    strip_citations,
)

pytestmark = pytest.mark.unit


def test_accuracy_leaves_judge_failures_out() -> None:
    assert accuracy([True, False, None, True]) == (2 / 3, 3, 1)
    assert accuracy([None]) == (None, 0, 1)
    assert accuracy([]) == (None, 0, 0)


def test_clip_score_and_harmonic_mean() -> None:
    assert clip_score(0.3) == pytest.approx(0.75)
    assert clip_score(-0.2) == 0.0
    assert clip_score(0.5) == pytest.approx(1.25)  # uncapped, as Hessel et al.
    assert harmonic_mean(0.5, 1.0) == pytest.approx(2 / 3)
    assert harmonic_mean(0.0, 0.9) == 0.0


def test_rcid_parts_full_case() -> None:
    # 3 objects with context; 2 mentioned (1 and 3): 1 correct + consistent, 3 wrong + uncertain
    parts = rcid_parts(3, [3, 1], {1: True, 3: False}, {1: "consistent", 3: "uncertain"}, cosine=0.3)
    assert parts.cc == pytest.approx(2 / 3)
    assert parts.ca == pytest.approx(1 / 2)
    assert parts.cvc == pytest.approx((1 + 0.5) / 2)
    ctx = (2 / 3 + 1 / 2 + 3 / 4) / 3
    assert parts.ctx == pytest.approx(ctx)
    assert parts.clip == pytest.approx(0.75)
    assert parts.score == pytest.approx(2 * ctx * 0.75 / (ctx + 0.75))


def test_rcid_parts_nothing_mentioned_gives_zero_ca_and_cvc() -> None:
    parts = rcid_parts(2, [], {}, {}, cosine=0.2)
    assert (parts.cc, parts.ca, parts.cvc, parts.ctx) == (0.0, 0.0, 0.0, 0.0)
    assert parts.clip == pytest.approx(0.5)
    assert parts.score == 0.0  # harmonic mean with a zero


def test_rcid_parts_without_context_objects_is_not_scored() -> None:
    parts = rcid_parts(0, [], {}, {}, cosine=0.4)
    assert (parts.cc, parts.ca, parts.cvc, parts.ctx, parts.score) == (None, None, None, None, None)
    assert parts.clip == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rcid_parts(2, [3], {}, {}, cosine=None)


def test_rcid_without_clip_has_context_but_no_rcidscore() -> None:
    parts = rcid_parts(1, [1], {1: True}, {1: "inconsistent"}, cosine=None)
    assert parts.ctx == pytest.approx((1 + 1 + 0) / 3)
    assert parts.clip is None and parts.score is None


def test_sentences_keep_trailing_citations() -> None:
    text = "Bella, his dog [2], is asleep. They love movie nights.[3] Version 2.5 is out! Last one"
    assert split_sentences(text) == [
        "Bella, his dog [2], is asleep.",
        "They love movie nights.[3]",
        "Version 2.5 is out!",
        "Last one",
    ]
    assert strip_citations("Bella, his dog [2], is asleep [1, 3].") == "Bella, his dog, is asleep."


def test_alce_needed_vs_redundant_citation() -> None:
    # [1][2] together entail; [1] alone does; [2] alone does not, and [1] without [2] still does → [2] redundant
    redundant = SentenceCheck([1, 2], True, alone={1: True, 2: False}, without={1: False, 2: True})
    assert redundant.precise() == 1
    # both needed: neither alone entails, and neither remaining one entails without the other → both precise
    needed = SentenceCheck([1, 2], True, alone={1: False, 2: False}, without={1: False, 2: False})
    assert needed.precise() == 2
    score = citation_score([redundant, needed])
    assert score == CitationScore(recall=1.0, precision=3 / 4, citations=4)


def test_alce_unsupported_and_uncited_sentences() -> None:
    single_wrong = SentenceCheck([2], supported=False)
    multi_wrong = SentenceCheck([1, 3], supported=False)
    image_only = SentenceCheck([], supported=True)  # the image, implicitly cited, entails it
    score = citation_score([single_wrong, multi_wrong, image_only])
    assert score.recall == pytest.approx(1 / 3)
    assert score.precision == 0.0 and score.citations == 3
    uncited = citation_score([SentenceCheck([], supported=True)])
    assert uncited == CitationScore(1.0, 0.0, 0)  # ALCE: no citations → precision 0
    assert citation_score([]) == CitationScore(0.0, 0.0, 0)


def test_citation_f1_is_harmonic_mean_of_means() -> None:
    recall, precision, f1 = citation_f1([CitationScore(1.0, 0.5, 2), CitationScore(0.5, 1.0, 1)])
    assert (recall, precision) == (0.75, 0.75)
    assert f1 == pytest.approx(0.75)
    assert citation_f1([]) == (None, None, None)


class _TableEntailment(EntailmentJudge):
    """Entailment from a fixed table of (claim, sorted passages) — the ALCE procedure is what is tested."""

    def __init__(self, table: dict[tuple[str, tuple[str, ...]], bool]) -> None:
        self.table = table
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    async def entails(self, claim: str, passages: Sequence[str], *, image: Image.Image | None, question: str) -> bool:
        key = (claim, tuple(sorted(passages)))
        self.asked.append(key)
        return self.table.get(key, False)


def test_judges_follow_alce_with_cap_and_invalid_numbers() -> None:
    passages = {1: "p1", 2: "p2", 3: "p3", 4: "p4"}
    table = {
        ("A.", ("p1", "p2")): True,
        ("A.", ("p1",)): True,
        ("A.", ("p2",)): False,
        ("B.", ("p1", "p2", "p3")): True,
        ("B.", ("p1", "p2")): False,
        ("B.", ("p1", "p3")): False,
        ("B.", ("p2", "p3")): False,
        ("C.", ()): True,
    }
    judge = _TableEntailment(table)
    checks = asyncio.run(
        Judges(None, judge).citations("A [1][2]. B [1][2][3][4]. C. D [9].", passages, image=None, question="q")
    )
    a, b, c, d = checks
    assert a == SentenceCheck([1, 2], True, alone={1: True, 2: False}, without={1: False, 2: True})
    assert b.citations == [1, 2, 3]  # the 4th citation is not counted
    assert b.supported and b.precise() == 3
    assert c == SentenceCheck([], True)  # judged against the image alone
    assert d == SentenceCheck([9], False)  # no passage [9]: unsupported without asking
    assert not any(claim == "D." for claim, _ in judge.asked)
    score = citation_score(checks)
    assert score.recall == pytest.approx(3 / 4)
    assert score.precision == pytest.approx((1 + 3 + 0) / (2 + 3 + 1))


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("B", "B"),
        ("(C)", "C"),
        ("A. A youth basketball team [1]", "A"),
        ("C) bees", "C"),
        ("The answer is D.", "D"),
        ("Option B", "B"),
        ("E", None),  # not an offered letter
        ("I think it is the cello.", None),
        ("", None),
    ],
)
def test_extract_letter(reply: str, letter: str | None) -> None:
    assert extract_letter(reply, "ABCD") == letter


def test_rcp_open_world_accepts_not_enough_information_only_when_not_retrieved() -> None:
    assert rcp_correct("A", "A", not_enough="D", retrieved=True, open_world=False)
    assert not rcp_correct("D", "A", not_enough="D", retrieved=False, open_world=False)  # closed world
    assert rcp_correct("D", "A", not_enough="D", retrieved=False, open_world=True)
    assert not rcp_correct("D", "A", not_enough="D", retrieved=True, open_world=True)
    assert not rcp_correct(None, "A", not_enough="D", retrieved=False, open_world=True)
    assert not rcp_correct("B", "A", not_enough=None, retrieved=False, open_world=True)
