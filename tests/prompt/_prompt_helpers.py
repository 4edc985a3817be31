"""Shared by the prompt tests: the published instruction lines and a short way to make a context entry.

Imported by name (the conftest puts this folder on sys.path); the name is unique across the suite."""

from __future__ import annotations

from rcmu_agent.schema import ContextEntry, Region

INSTRUCTION_LINE = (
    "Answer the following question based on the information above and the given image, "
    "and provide citations for your response."
)
MEMORY_INSTRUCTION_LINE = (
    "Answer the following question based on the information above, and provide citations for your response."
)


def entry(
    box: tuple[float, float, float, float],
    category: str = "person",
    info: str | None = "someone",
    *,
    name: str | None = None,
    index: int | None = None,
) -> ContextEntry:
    return ContextEntry(region=Region(box=box, category=category), info=info, name=name, index=index)
