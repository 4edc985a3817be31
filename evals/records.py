"""`items.jsonl`: one record per question asked, the file every evaluation writes, resumes from and
summarises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from rcmu_agent.jsonl import read_models

__all__ = ["ItemRecord", "read_records"]


class ItemRecord(BaseModel):
    """One line of items.jsonl: one question asked in one setting, and everything judged about it."""

    key: str  # unique per line: item id, plus "@setting" where one item is asked several ways
    id: str
    benchmark: str
    kind: str
    setting: str = "given"
    question: str
    reference: str | None = None
    image: str | None = None
    prediction: str = ""
    unanswerable: bool = False
    citations: list[int] = Field(default_factory=list)
    invalid_citations: list[int] = Field(default_factory=list)
    prompt: str = ""  # the context block the model was sent (Answer.prompt)
    hits: list[dict[str, Any]] = Field(default_factory=list)  # regions and who was recognised in them
    choice: str | None = None
    gold: str | None = None
    target_retrieved: bool | None = None
    verdicts: dict[str, Any] = Field(default_factory=dict)
    judge_failures: list[dict[str, str]] = Field(default_factory=list)
    error: str | None = None  # the prediction itself failed (backend down, bad input)
    seconds: float = 0.0


def read_records(path: Path) -> list[ItemRecord]:
    """Records in file order; a torn or foreign line is skipped (the writer repairs torn tails)."""
    if not path.is_file():
        return []
    return [record for _, record in read_models(path, ItemRecord, [])]
