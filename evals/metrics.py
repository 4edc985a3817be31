"""The metric arithmetic of SPEC §4–§5, as pure functions over judge verdicts (no model, no I/O).

Judges decide facts about one answer ("is this correct?", "does this passage entail this sentence?");
everything here turns those facts into the paper's numbers, so each branch can be checked by hand.
Rates are fractions in [0, 1]; reports multiply by 100.

Edge cases, decided once:
- RCVQA: items whose judge failed are left out of the accuracy and counted separately, never as wrong.
- RCIDScore, per description over its k objects with context and N = objects mentioned:
  CC = N / k; CA = correct / N and CVC = sum(consistency) / N, both 0 when N = 0 (SPEC).
  When k = 0 (no object has context) CC has no denominator: the description gets no context score
  (CC = CA = CVC = ctx = None), so no RCIDScore either, and it is left out of those averages (reported
  as `no_context`); its CLIPScore still counts. A vacuous "complete" would reward saying nothing.
- RCIDScore = harmonic mean(ctx, CLIPScore), 0 when either is 0; CLIPScore = 2.5 · max(cos, 0), uncapped.
- Citations (ALCE): at most 3 citations per sentence count; a citation number with no context entry
  behind it makes its sentence unsupported; precision over an answer without citations is 0 (as ALCE);
  F1 is the harmonic mean of the mean recall and the mean precision.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_CITATIONS",
    "CitationScore",
    "RcidParts",
    "SentenceCheck",
    "accuracy",
    "citation_f1",
    "citation_score",
    "clip_score",
    "extract_letter",
    "harmonic_mean",
    "mean",
    "rcid_parts",
    "rcp_correct",
    "split_sentences",
    "strip_citations",
]

MAX_CITATIONS = 3
CONSISTENCY = {"consistent": 1.0, "inconsistent": 0.0, "uncertain": 0.5}

_CITE = r"\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]"
# A sentence ends at . ! ? (plus any citations written right after it, as in "...nights.[3]") and whitespace.
_SENTENCE = re.compile(rf".*?[.!?]+(?:\s*{_CITE})*(?=\s|$)|.+?$", re.DOTALL)
_CITE_RE = re.compile(_CITE)


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean, None for no values (a metric with nothing to average is not 0)."""
    values = list(values)
    return statistics.fmean(values) if values else None


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


def accuracy(verdicts: Iterable[bool | None]) -> tuple[float | None, int, int]:
    """(correct / judged, judged, failures): None verdicts are judge failures, left out."""
    verdicts = list(verdicts)
    judged = [v for v in verdicts if v is not None]
    failures = len(verdicts) - len(judged)
    return (sum(judged) / len(judged) if judged else None), len(judged), failures


# ---- RCIDScore ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RcidParts:
    cc: float | None
    ca: float | None
    cvc: float | None
    ctx: float | None
    clip: float | None
    score: float | None  # RCIDScore


def clip_score(cosine: float) -> float:
    """CLIPScore (Hessel et al. 2021): 2.5 · max(cos, 0)."""
    return 2.5 * max(cosine, 0.0)


def rcid_parts(
    k: int,
    mentioned: Sequence[int],
    correct: Mapping[int, bool],
    consistency: Mapping[int, str],
    cosine: float | None,
) -> RcidParts:
    """One description's parts. `mentioned` are object numbers (1..k); `correct` and `consistency`
    hold the MLLM's verdict for each mentioned object ("consistent" / "inconsistent" / "uncertain")."""
    clip = None if cosine is None else clip_score(cosine)
    if k == 0:
        return RcidParts(None, None, None, None, clip, None)
    named = sorted(set(mentioned))
    if any(not 1 <= n <= k for n in named):
        raise ValueError(f"mentioned objects {named} outside 1..{k}")
    n = len(named)
    cc = n / k
    ca = sum(bool(correct.get(i, False)) for i in named) / n if n else 0.0
    cvc = sum(CONSISTENCY[consistency.get(i, "inconsistent")] for i in named) / n if n else 0.0
    ctx = (cc + ca + cvc) / 3
    score = None if clip is None else harmonic_mean(ctx, clip)
    return RcidParts(cc, ca, cvc, ctx, clip, score)


# ---- citations (ALCE) ---------------------------------------------------------------------------
def split_sentences(text: str) -> list[str]:
    """Sentences, each keeping the citations written after its full stop."""
    return [s.strip() for s in _SENTENCE.findall(text.strip()) if s.strip()]


def strip_citations(sentence: str) -> str:
    return re.sub(r"\s+([.,;:!?])", r"\1", " ".join(_CITE_RE.sub(" ", sentence).split()))


@dataclass
class SentenceCheck:
    """What the entailment judge said about one sentence.

    `citations` are the counted ones (≤ 3); `supported`: the image plus all of them entail the
    sentence; `alone[c]`: the image plus c alone does; `without[c]`: the image plus the others do.
    `alone`/`without` are only needed for supported sentences with two or more citations.
    """

    citations: list[int]
    supported: bool
    alone: dict[int, bool] = field(default_factory=dict)
    without: dict[int, bool] = field(default_factory=dict)

    def precise(self) -> int:
        """Citations that are precise: with one citation, the sentence must be supported; with more,
        a citation is imprecise only if it alone does not entail AND the rest still do without it."""
        if not self.citations or not self.supported:
            return 0
        if len(self.citations) == 1:
            return 1
        return sum(1 for c in self.citations if self.alone[c] or not self.without[c])


@dataclass(frozen=True)
class CitationScore:
    recall: float
    precision: float
    citations: int


def citation_score(sentences: Sequence[SentenceCheck]) -> CitationScore:
    """One answer: recall = supported sentences / sentences; precision = precise / all citations."""
    if not sentences:
        return CitationScore(0.0, 0.0, 0)
    recall = sum(s.supported for s in sentences) / len(sentences)
    total = sum(len(s.citations) for s in sentences)
    precision = sum(s.precise() for s in sentences) / total if total else 0.0
    return CitationScore(recall, precision, total)


def citation_f1(scores: Sequence[CitationScore]) -> tuple[float | None, float | None, float | None]:
    """(mean recall, mean precision, F1 of the two) over answers."""
    recall = mean(s.recall for s in scores)
    precision = mean(s.precision for s in scores)
    if recall is None or precision is None:
        return None, None, None
    return recall, precision, harmonic_mean(recall, precision)


# ---- multiple choice ----------------------------------------------------------------------------
_ONLY_LETTER = re.compile(r"^\W*\(?([A-Z])\)?\W*$")
_LEADING = re.compile(r"^\s*\(?([A-Z])\)?(?:[.:)]|\s+-|\s*$|\s)")
_SAID = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\)?(?![a-z])", re.IGNORECASE)


def extract_letter(reply: str, letters: Iterable[str]) -> str | None:
    """The option letter a reply chooses, by exact patterns only (no judge): "B", "(B)", "B. text",
    "The answer is B". None when no allowed letter is found that way (counted as wrong)."""
    allowed = set(letters)
    text = strip_citations(reply).strip()
    for pattern in (_ONLY_LETTER, _LEADING, _SAID):
        match = pattern.search(text)
        if match:
            letter = match.group(1).upper()
            return letter if letter in allowed else None
    return None


def rcp_correct(choice: str | None, gold: str, *, not_enough: str | None, retrieved: bool, open_world: bool) -> bool:
    """RC&P-Bench scoring: closed-world counts only the gold letter; open-world also accepts the
    "not enough information" option when the needed entity was not retrieved."""
    if choice == gold:
        return True
    return open_world and not retrieved and not_enough is not None and choice == not_enough
