"""What a turn means, decided by an optional tool-calling chat model (`RCMU_CHAT_MODEL`).

Any LangChain chat model `init_chat_model` builds ("openai:gpt-4.1-mini", "anthropic:…", or an
OpenAI-compatible local server: `RCMU_CHAT_MODEL=openai:qwen2.5` with `RCMU_CHAT_BASE_URL`) is shown
the turn and the regions of the last answer, with four tools: remember a region, update someone's
info, forget someone, list the memory. A tool call becomes the same `Intent` the offline grammar
(`rcmu_agent.teach_grammar`) produces, and goes through the same checks and confirmation; a reply
without a tool call leaves the turn a question. RC-Qwen2-VL still answers every question.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from rcmu_agent.errors import BackendError, InvalidInputError
from rcmu_agent.prompt import shown_text
from rcmu_agent.schema import ContextEntry
from rcmu_agent.settings import Settings
from rcmu_agent.teach_grammar import Intent, parse_turn

__all__ = ["interpret"]

log = logging.getLogger(__name__)

_SYSTEM = (
    "You route one chat turn of a personal photo assistant. If the user tells who or what is in the photo, "
    "or asks to change, forget or list what the assistant remembers, call exactly one tool. If the turn is a "
    "question or anything else, reply with the single word QUESTION and call no tool. The user's own words "
    "decide; never invent names or facts."
)


class remember_region(BaseModel):  # the tool's name, as the model sees it
    """Remember who or what is at a numbered region of the photo (a person, a pet, a thing)."""

    region: int | None = Field(default=None, description="The [n] of the region; omit when the photo has one region")
    name: str = Field(description="The name, as the user wrote it")
    info: str | None = Field(default=None, description="What the user said about them, in their words")
    category: str | None = Field(default=None, description="person, dog, cat, ...; omit for a person")


class update_info(BaseModel):
    """Add a fact the user states about someone already remembered ("Rose moved to Lisbon")."""

    name: str = Field(description="Who it is about")
    fact: str = Field(description="The fact, as one sentence")


class forget(BaseModel):
    """Forget someone or something the assistant remembers."""

    name: str


class list_memory(BaseModel):
    """List everyone and everything the assistant remembers."""


_TOOLS = [remember_region, update_info, forget, list_memory]


@functools.cache
def _model(name: str, base_url: str | None, api_key: str | None, timeout: float) -> Any:
    """One chat model per configuration, bound to the tools, never streamed into the chat."""
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:  # pragma: no cover - langchain is a dependency
        raise BackendError(f"RCMU_CHAT_MODEL needs langchain: {exc}", "pip install langchain") from None
    options: dict[str, Any] = {"temperature": 0, "timeout": timeout, "max_retries": 1, "disable_streaming": True}
    if base_url:
        options["base_url"] = base_url
        options["api_key"] = api_key or os.environ.get("OPENAI_API_KEY") or "unused"
    elif api_key:
        options["api_key"] = api_key
    try:
        model = init_chat_model(name, **options)
    except (ImportError, ValueError) as exc:
        raise BackendError(
            f"RCMU_CHAT_MODEL={name!r} could not be built: {exc}",
            "name a provider and model ('openai:gpt-4.1-mini') and install its package (pip install langchain-openai)",
        ) from None
    return model.bind_tools(_TOOLS).with_config(tags=["nostream"], run_name="rcmu-route")


def _regions(entries: Sequence[ContextEntry]) -> str:
    lines = []
    for e in sorted((e for e in entries if e.index is not None and e.box is not None), key=lambda e: e.index or 0):
        who = shown_text(e.name) or f"an unrecognised {shown_text(e.category)}"
        box = ",".join(f"{v:.0f}" for v in e.box or ())
        lines.append(f"[{e.index}] = {who} at ({box})")
    return "\n".join(lines) or "(no photo, or no region in it)"


def interpret(settings: Settings, text: str, entries: Sequence[ContextEntry]) -> Intent | None:
    """The change the chat model picked for `text`, or None when it called no tool (a question)."""
    from langchain_core.messages import HumanMessage, SystemMessage

    if not settings.chat_model:
        return None
    key = settings.api_key.get_secret_value() if settings.api_key else None
    model = _model(settings.chat_model, settings.chat_base_url, key, settings.request_timeout)
    regions = f"Regions of the last answer about the photo:\n{_regions(entries)}"
    try:
        reply = model.invoke([SystemMessage(_SYSTEM), HumanMessage(f"{regions}\n\nTurn: {text}")])
    except Exception as exc:  # the router down must not stop questions: the grammar decides this turn
        log.warning(
            "the chat model RCMU_CHAT_MODEL=%r failed (%s: %s); this turn is read by the grammar instead",
            settings.chat_model, type(exc).__name__, str(exc)[:200],
        )  # fmt: skip
        return parse_turn(text)
    calls = list(getattr(reply, "tool_calls", None) or [])
    if not calls:
        return None
    call = calls[0]
    args = dict(call.get("args") or {})
    try:
        if call["name"] == "remember_region":
            region = args.get("region")
            return Intent(
                "remember",
                name=str(args["name"]),
                info=args.get("info") or None,
                category=args.get("category") or None,
                target=int(region) if region is not None else "only",
            )
        if call["name"] == "update_info":
            return Intent("update", name=str(args["name"]), info=str(args["fact"]))
        if call["name"] == "forget":
            return Intent("forget", name=str(args["name"]))
        if call["name"] == "list_memory":
            return Intent("list")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"the chat model called {call['name']} with unusable arguments ({exc})", "rephrase the turn"
        ) from None
    log.warning("the chat model called an unknown tool %r; the turn is answered as a question", call["name"])
    return None
