"""The record that flows through the construction stages, and the shapes the LLM must reply in.

One `Work` line per source image: each stage reads the previous stage's line, adds its fields and
writes a new line, so every stage's output on disk is complete on its own and a stage can be rerun
without the ones before it. The reply models double as the `check` passed to `LLM.json`: a reply of
the wrong shape raises (pydantic's ValidationError is a ValueError) and the LLM is asked again.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator

from rcmu_agent.prompt import number_entries
from rcmu_agent.schema import ContextEntry, Region
from rcmu_agent.train.records import InstructionRecord, RecordRegion

__all__ = [
    "QA",
    "CitedReply",
    "FactsReply",
    "ProfilesReply",
    "QAReply",
    "ScoresReply",
    "SubstituteReply",
    "UnanswerableReply",
    "Work",
    "WorkObject",
]


def _text(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("empty text")
    return value


Text = Annotated[str, AfterValidator(_text)]


class QA(BaseModel):
    question: Text
    answer: Text


class WorkObject(BaseModel):
    box: tuple[float, float, float, float]
    category: str
    expressions: list[str] = Field(default_factory=list)
    name: str | None = None
    info: str | None = None
    info_facts: list[str] = Field(default_factory=list)
    visual_facts: list[str] = Field(default_factory=list)
    visual_qa: list[QA] = Field(default_factory=list)
    contextual_qa: list[QA] = Field(default_factory=list)
    context_expressions: list[str] = Field(default_factory=list)
    unanswerable_qa: list[QA] = Field(default_factory=list)
    absent_expressions: list[str] = Field(default_factory=list)


class Work(BaseModel):
    id: str  # the source id: what "already done" means for every stage
    image: str
    image_size: tuple[int, int] = (0, 0)
    caption: str | None = None
    objects: list[WorkObject]
    stage: str = ""
    instructions: list[InstructionRecord] = Field(default_factory=list)

    def regions(self) -> list[RecordRegion]:
        return [RecordRegion(box=o.box, category=o.category, info=o.info, name=o.name) for o in self.objects]

    def entry_numbers(self) -> list[int | None]:
        """Each object's `[n]`, numbered exactly as the prompt builder numbers the regions."""
        entries = [
            ContextEntry(region=Region(box=o.box, category=o.category, info=o.info), info=o.info, name=o.name)
            for o in self.objects
        ]
        return [e.index for e in number_entries(entries)]


class Profile(BaseModel):
    name: Text
    info: Text


class ProfilesReply(BaseModel):
    profiles: list[Profile] = Field(min_length=1)


class FactsReply(BaseModel):
    info_facts: list[Text] = Field(min_length=1)
    visual_facts: list[Text] = Field(default_factory=list)


class QAReply(BaseModel):
    visual_qa: list[QA] = Field(default_factory=list)
    contextual_qa: list[QA] = Field(default_factory=list)
    context_expressions: list[Text] = Field(default_factory=list)


class UnanswerableReply(BaseModel):
    unanswerable_qa: list[QA] = Field(default_factory=list)
    absent_expressions: list[Text] = Field(default_factory=list)

    @field_validator("unanswerable_qa")
    @classmethod
    def _refusals(cls, items: list[QA]) -> list[QA]:
        from rcmu_agent.citations import is_refusal

        if not all(is_refusal(qa.answer) for qa in items):
            raise ValueError("an unanswerable answer must decline (start with 'Cannot be answered.')")
        return items


class Score(BaseModel):
    item: int
    validity: float = Field(ge=1, le=5)
    informativeness: float = Field(ge=1, le=5)


class ScoresReply(BaseModel):
    scores: list[Score]


class SubstituteReply(BaseModel):
    questions: list[Text]


class CitedReply(BaseModel):
    description: Text
