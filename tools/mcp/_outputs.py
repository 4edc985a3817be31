"""What an MCP tool result carries besides its text: the output schema each tool's `structuredContent` is
validated against (the LangChain tool's artifact, extra keys allowed), and that artifact with every path
on the server's disk taken out, since a client is a stranger to this machine."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["OUTPUTS", "AnswerOutput", "EntityOutput", "PeopleOutput", "PhotosOutput", "without_paths"]


class _Output(BaseModel):
    """The structured part of a tool's result: the LangChain tool's artifact (see its docs)."""

    model_config = ConfigDict(extra="allow")


class AnswerOutput(_Output):
    """An answer with citations: `citations[i]` has `index`, `entity_id`, `name`, `box` (pixels)."""

    answer: str
    unanswerable: bool
    citations: list[dict[str, Any]]
    regions: list[dict[str, Any]]


class EntityOutput(_Output):
    entity: dict[str, Any]


class PeopleOutput(_Output):
    people: list[dict[str, Any]]


class PhotosOutput(_Output):
    """Photos found in the library, and for a `question` also the answer over them (`answer`,
    `citations`, `photo_citations`: each `[n]` as `index`, `photo_id`, `file`, `box`, `name`).
    `photos[i]` has `id`, `file` (the file name; server paths are never sent), `taken_at`, `place`,
    `people`, and for a search `regions` and `matched_regions` (indices into `regions`)."""

    photos: list[dict[str, Any]]


OUTPUTS: dict[str, type[_Output]] = {
    "ask_about_photo": AnswerOutput,
    "describe_photo": AnswerOutput,
    "recall": AnswerOutput,
    "remember": EntityOutput,
    "forget": EntityOutput,
    "list_people": PeopleOutput,
    "search_photos": PhotosOutput,
}


def without_paths(artifact: dict[str, Any]) -> dict[str, Any]:
    """The artifact as a client may see it: no path on this server's disk (the answer's `photo` is a
    vault id; library photos keep only their file name, as `file`)."""

    def photo(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        kept = {k: v for k, v in item.items() if k not in {"path", "paths"}}
        return {**kept, "file": PurePath(str(item["path"])).name} if item.get("path") else kept

    structured = dict(artifact)
    for key in ("photos", "photo_citations"):
        if isinstance(structured.get(key), list):
            structured[key] = [photo(item) for item in structured[key]]
    return structured
