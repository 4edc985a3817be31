"""What the conversation says about a memory change: the question put before writing, the
`interrupt` payload front ends render, reading the answer to it, and the reply afterwards.

Kept apart from `rcmu_agent.teach` (which checks and writes changes) because this is only words and
shapes: every front end (LangGraph Server, Agent Chat UI, the CLI's y/N, the web app's card) meets
the same question and may answer in any of the shapes `read_decision` accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.prompt import shown_text
from rcmu_agent.schema import Entity, MemoryChange

__all__ = ["EDITABLE", "describe", "done_text", "interrupt_payload", "listing", "read_decision"]

_YES = {"yes", "y", "ok", "okay", "sure", "confirm", "approve", "accept", "true"}
_NO = {"no", "n", "cancel", "reject", "ignore", "decline", "false", "stop"}
EDITABLE = {"name", "info", "category"}  # a region is changed by answering no and naming another


def read_decision(value: Any) -> bool | dict[str, Any]:
    """A resume value: yes (True), no (False), or an edit (a dict of name/info/category). Also the
    shapes Agent Chat UI and LangChain's human-in-the-loop send (`{"decisions": [{"type": ...}]}`,
    `[{"type": "accept"}]`, `{"type": "edit", "edited_action": {"args": {...}}}`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower().rstrip(".!") in _YES | _NO:
        return value.strip().lower().rstrip(".!") in _YES
    if isinstance(value, list) and len(value) == 1:
        return read_decision(value[0])
    if isinstance(value, dict):
        if isinstance(value.get("decisions"), list) and len(value["decisions"]) == 1:
            return read_decision(value["decisions"][0])
        kind = value.get("type")
        if kind in ("approve", "accept"):
            return True
        if kind in ("reject", "ignore"):
            return False
        if kind == "response":
            return read_decision(value.get("args") or value.get("message"))
        if kind == "edit":
            action = value.get("edited_action") or value.get("args") or {}
            args = action.get("args", action) if isinstance(action, dict) else None
            return read_decision(args) if isinstance(args, dict) and args else False
        if kind is None and value and set(value) <= EDITABLE | {"region"}:  # UIs send every arg back
            return dict(value)
    raise InvalidInputError(
        "the answer to the proposed memory change is not understood",
        'resume with "yes", "no", or an edit such as {"name": "Rose Leslie", "info": "my sister"}',
    )


def describe(change: MemoryChange) -> str:
    """One line a person reads before saying yes: what will be written, and where it comes from."""
    who = f"{shown_text(change.name)} ({shown_text(change.category)})"
    if change.action == "forget":
        return f"Forget {who} and the reference photos taught with them?"
    if change.action == "update":
        return f"Update {who}? Info: {shown_text(change.info)}"
    where = f"region [{change.region}]" if change.region is not None else "the whole photo"
    if change.box is not None:
        where += " at (" + ",".join(f"{v:.0f}" for v in change.box) + ")"
    verb = "Add this photo to" if change.existing else "Remember"
    return f"{verb} {who} from {where}? Info: {shown_text(change.info)}"


def interrupt_payload(change: MemoryChange) -> dict[str, Any]:
    """What the graph's `interrupt` carries: the proposal, a question, and the same as a LangChain
    human-in-the-loop request (which Agent Chat UI renders with approve / edit / reject)."""
    question = describe(change)
    args = {k: v for k, v in change.model_dump(mode="json").items() if k in ("name", "info", "category", "region")}
    return {
        "question": question,
        "resume": 'yes, no, or an edit such as {"name": "…", "info": "…"}',
        "proposal": change.model_dump(mode="json"),
        "action_requests": [{"name": change.action, "args": args, "description": question}],
        "review_configs": [{"action_name": change.action, "allowed_decisions": ["approve", "edit", "reject"]}],
    }


def done_text(change: MemoryChange) -> str:
    """The reply after the resume: what changed, or that nothing did."""
    who = f"{shown_text(change.name)} ({shown_text(change.category)})"
    if change.status == "declined":
        return f"Nothing changed: {who} was not {_past(change)}."
    if change.action == "forget":
        return f"Forgot {who}."
    if change.action == "update":
        return f"Updated {who}: {shown_text(change.info)}"
    source = f"region [{change.region}]" if change.region is not None else "the photo"
    return f"Remembered {who} from {source}; they will be recognised in later photos."


def _past(change: MemoryChange) -> str:
    return {"forget": "forgotten", "update": "updated", "remember": "remembered", "list": "listed"}[change.action]


def listing(entities: Sequence[Entity]) -> str:
    """'Who do you know?': one line per entity, cleaned like everything a model or person reads."""
    if not entities:
        return "I know nobody yet. Ask about a photo, then tell me who is who: '[1] is Rose, my sister'."
    lines = [f"- {shown_text(e.name)} ({shown_text(e.category)}): {shown_text(e.info)}" for e in entities]
    return f"I know {len(entities)}:\n" + "\n".join(lines)
