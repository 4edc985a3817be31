"""What every rcmu tool shares: the assistant and user it is bound to, error text, and answer text.

Every text a tool hands a host model goes through `prompt.shown_text`, the prompt's own cleaning: a
remembered name or a caller's info reaches the host model exactly as clean as it reaches RC-Qwen2-VL
(no chat tokens, no invisible or direction-changing characters, no forged `[n]`).

A tool is bound to one `Assistant` and one user when it is built, so the user scope is never something
a model can choose (the argument schemas have no `user`). Errors a user could fix (`RcmuError`) and
arguments that do not fit the schema both come back as a tool message with the `problem — fix` line,
status "error", which a calling model can act on; anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, ToolException
from pydantic import Field, ValidationError, model_validator

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import RcmuError
from rcmu_agent.photos import PhotoAccess, PhotoSource, to_photo
from rcmu_agent.prompt import shown_text
from rcmu_agent.schema import Answer, ContextEntry
from rcmu_agent.users import check_user

__all__ = ["RcmuTool", "answer_text", "default_assistant", "failures", "tool_error_text", "validation_error_text"]


def tool_error_text(exc: ToolException) -> str:
    """The tool message for an error a caller can fix: one line, problem then fix."""
    return f"error: {exc}"


def validation_error_text(exc: Exception) -> str:
    """Schema violations, listed by argument, with the same `problem — fix` shape as other errors."""
    errors = exc.errors() if isinstance(exc, ValidationError) else []
    problems = "; ".join(
        ".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg", "")).removeprefix("Value error, ")
        for e in errors
    )
    return f"error: invalid arguments: {problems or exc} — call the tool again with arguments that match its schema"


@contextmanager
def failures() -> Iterator[None]:
    """Turn the library's fixable errors into `ToolException`, which `handle_tool_error` reports."""
    try:
        yield
    except RcmuError as exc:
        raise ToolException(str(exc)) from exc


def default_assistant() -> Assistant:
    return Assistant()


class RcmuTool(BaseTool):
    """Base of the rcmu tools: bound to an assistant and a user, answers as (text, artifact)."""

    assistant: Assistant = Field(default_factory=default_assistant, exclude=True, repr=False)
    """Memory, detection and the model; built from `RCMU_*` settings when not given."""
    user: str | None = None
    """Whose memory the tool reads and writes; `None` means the settings' user (`RCMU_USER`)."""

    roots: list[Path] | None = Field(default=None, exclude=True)
    """Folders photo paths may come from; `None` means `RCMU_ALLOWED_ROOTS`. An MCP server sets its
    client's declared roots here. Never the rcmu home either way."""

    response_format: Any = "content_and_artifact"
    handle_tool_error: Any = tool_error_text
    handle_validation_error: Any = validation_error_text

    @model_validator(mode="after")
    def _bind_user(self) -> RcmuTool:
        """Resolve the user once, here: a tool's scope must not change with the environment later."""
        self.user = check_user(self.user if self.user is not None else self.assistant.settings.user)
        return self

    @property
    def scope(self) -> str:
        return self.user or self.assistant.settings.user

    def photo(self, value: Any) -> PhotoSource:
        """A photo argument, read once: inline bytes, a vault id of this user's, or a file under
        `RCMU_ALLOWED_ROOTS` (with `{user}` as this tool's user), never under the rcmu home."""
        access = PhotoAccess.for_user(self.assistant.settings, self.scope)
        if self.roots is not None:
            access = replace(access, roots=tuple(self.roots))
        return to_photo(value, access)


def _box(entry: ContextEntry) -> str:
    box = entry.box
    return "(" + ",".join(f"{v:.0f}" for v in box) + ")" if box else ""


def legend_line(entry: ContextEntry) -> str:
    """`[n] = name (category) at (x1,y1,x2,y2)`: what each citation number stands for. Name and
    category are cleaned: "Obama [2] = Joe Biden" must not read as a second line of the legend."""
    label = f"[{entry.index}]" if entry.index is not None else "[-]"
    name, category = shown_text(entry.name), shown_text(entry.category) or "object"
    if name:
        who = f"{name} ({category})"
    elif entry.info:
        who = f"a {category} described by the caller"
    else:  # numbered too, so "[3] is Rose" names it (`teach`), but not sent as context
        who = f"an unrecognised {category}"
    where = f" at {_box(entry)}" if entry.box else f", memory entry {entry.entity_id}" if entry.entity_id else ""
    return f"{label} = {who}{where}"


def answer_text(answer: Answer) -> str:
    """The answer, then a legend resolving its citation numbers; short, for a model to read."""
    # the model's own text keeps its lines and its [n] (they are the citations), loses tokens and hidden characters
    lines = [shown_text(answer.text, citations=True, single_line=False) or "(the model returned no text)"]
    entries = sorted(answer.regions, key=lambda e: (e.index is None, e.index or 0))
    lines += [legend_line(e) for e in entries]
    if not entries:
        lines.append("(nothing in memory matched: no context was given to the model)")
    if answer.invalid_citations:
        numbers = ", ".join(f"[{n}]" for n in answer.invalid_citations)
        lines.append(f"note: the answer cites {numbers}, which match no context entry; do not trust them")
    return "\n".join(lines)
