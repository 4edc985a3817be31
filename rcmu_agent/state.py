"""What goes into the agent, what comes out, and what it keeps per thread.

Three schemas, as LangGraph templates keep them: a caller (a chat front end, `langgraph-sdk`, the
`Assistant`) sees only `InputState` and `OutputState`; `AgentState` adds what the steps find. The
per-turn options are ephemeral channels, so a turn's regions or `context_only` can never leak into
the next turn, even when a run fails half way. Everything stored is plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.channels import EphemeralValue
from langgraph.graph import add_messages
from typing_extensions import TypedDict  # LangGraph derives JSON schemas from these on Python 3.11

__all__ = ["AgentState", "Context", "InputState", "OutputState", "Route"]

Route = Literal["detect", "compose", "memory", "library", "teach"]


@dataclass
class Context:
    """Per-run context. `user` is honoured for local callers (the CLI, Python); behind LangGraph
    Server the user comes from authentication instead, never from the request."""

    user: str | None = None
    teach: dict[str, Any] | None = None
    """A memory change asked for by a form rather than in words (a front end's 'name this region'):
    {name, info?, category?, region: n}. Proposed and confirmed like '[n] is NAME'."""


class InputState(TypedDict, total=False):
    """A turn: the conversation (the last message is the human's text plus at most one image) and options
    that hold for this turn only."""

    messages: Annotated[list[AnyMessage], add_messages]
    regions: Annotated[list[dict[str, Any]] | None, EphemeralValue(list)]
    """Boxes (pixels `[x1, y1, x2, y2]`, or a COCO RLE `mask`) with optional `category` and `info`, in
    the order `<region1>`, `<region2>`… of the question refer to; detection is skipped."""
    context_only: Annotated[bool, EphemeralValue(bool)]
    """Stop before the model: the AI message shows the context the model would have received."""
    library: Annotated[bool, EphemeralValue(bool)]
    """A question over the indexed photo library (no photo): answered from a collage of the best photos."""
    library_limit: Annotated[int, EphemeralValue(int)]


class OutputState(TypedDict, total=False):
    """The conversation with the answer appended, and the answer's structured form (`Answer` as JSON)."""

    messages: Annotated[list[AnyMessage], add_messages]
    answer: dict[str, Any]


class AgentState(InputState, OutputState, total=False):
    """Everything the steps add; checkpointed per thread, so a follow-up reuses the photo and regions."""

    user: str
    question: str
    turn: dict[str, Any]  # this turn's options, validated: regions, context_only, library_limit
    route: Route
    photo: str | None  # vault id of the photo the thread is about (looked up in the run's user's vault only)
    image_size: list[int]
    detected: list[dict[str, Any]]  # Region
    entries: list[dict[str, Any]]  # ContextEntry
    mentioned: list[dict[str, Any]]  # Entity
    prompt: str
    reply: str
    reply_id: str | None  # the streamed message's id, which the final AI message keeps
    library_photos: list[dict[str, Any]] | None  # PhotoHit, in collage order
    library_refs: list[dict[str, Any]] | None  # PhotoCitation per entry; None: the thread is not on the library
    intent: dict[str, Any] | None  # this turn's memory change as words (teach_grammar.Intent); None: a question
    change: dict[str, Any] | None  # MemoryChange: proposed (awaiting the confirming resume), then done or declined
