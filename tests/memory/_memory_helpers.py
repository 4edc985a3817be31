"""Shared by the memory tests: the five people of the shared photos and the way each test teaches and asks.

Imported by name (the conftest puts this folder on sys.path); the name is unique across the suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rcmu_agent.assistant import Assistant
from rcmu_agent.schema import Answer, ContextEntry
from rcmu_agent.settings import Settings

# file-name person → (name to teach, info)
PEOPLE = {
    "alex_lacamoire": ("Alex Lacamoire", "Alex Lacamoire is the music director and orchestrator of Hamilton."),
    "biden": ("Joe Biden", "Joe Biden was the 46th president of the United States."),
    "kit_harington": ("Kit Harington", "Kit Harington played Jon Snow in Game of Thrones."),
    "obama": ("Barack Obama", "Barack Obama was the 44th president of the United States."),
    "rose_leslie": ("Rose Leslie", "Rose Leslie played Ygritte in Game of Thrones."),
}
QUESTION = "Who is in this photo?"


def _settings(home: Path, **kwargs: Any) -> Settings:
    return Settings(home=home, object_detector=None, image_embedding_model=None, **kwargs)


def _assistant(home: Path, **kwargs: Any) -> Assistant:
    return Assistant(_settings(home, **kwargs))


def _references(faces_dir: Path) -> dict[str, list[Path]]:
    """reference/<person>_<n>.jpg grouped by person (the name before the last "_")."""
    out: dict[str, list[Path]] = {}
    for path in sorted((faces_dir / "reference").iterdir()):
        out.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    assert set(out) == set(PEOPLE), sorted(out)
    return out


def _ask(assistant: Assistant, photo: Path, user: str | None = None) -> Answer:
    answer = assistant.ask(QUESTION, photo, user=user, context_only=True)
    assert answer.context_only and answer.text == ""
    return answer


def _by_x(answer: Answer) -> list[ContextEntry]:
    return sorted(answer.regions, key=lambda r: r.box[0] if r.box else 0.0)


def _info_lines(prompt: str) -> list[str]:
    return [line for line in prompt.splitlines() if line.startswith("[")]


def _files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "photos").rglob("*") if p.is_file())


def _snapshot(assistant: Assistant, user: str | None = None) -> list[dict[str, object]]:
    return [e.model_dump() for e in assistant.entities(user=user)]
