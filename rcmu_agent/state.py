"""What goes into the agent, what comes out, and what it keeps per thread.

Three schemas, as LangGraph templates keep them: a caller (a chat front end, `langgraph-sdk`, the
`Assistant`) sees only `InputState` and `OutputState`; `AgentState` adds what the steps find. The
per-turn options are ephemeral channels, so a turn's regions or `context_only` can never leak into
the next turn, even when a run fails half way. Everything stored is plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Required

from langchain_core.messages import AnyMessage
from langgraph.channels import EphemeralValue
from langgraph.graph import add_messages
from langgraph.graph.ui import AnyUIMessage, ui_message_reducer
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # LangGraph derives JSON schemas from these on Python 3.11

__all__ = [
    "AgentState",
    "AnswerJSON",
    "CitationJSON",
    "Context",
    "InputState",
    "OutputState",
    "RegionEntryJSON",
    "RegionInput",
    "Route",
]

Route = Literal["detect", "compose", "memory", "library", "teach"]


@dataclass
class Context:
    """Per-run context. `user` is honoured for local callers (the CLI, Python); behind LangGraph
    Server the user comes from authentication instead, never from the request."""

    user: str | None = field(
        default=None,
        metadata={"description": "Whose memory and photos (local callers only; a server authenticates)."},
    )
    teach: dict[str, Any] | None = field(
        default=None,
        metadata={
            "description": "A memory change asked for by a form rather than in words (a front end's 'name this "
            "region'): {name, info?, category?, region: n}. Proposed and confirmed like '[n] is NAME'."
        },
    )


# The published schemas (`/assistants/{id}/schemas`, LangGraph Studio's form, typed clients) are
# derived from these TypedDicts by pydantic; attribute docstrings become the fields' descriptions.
_DESCRIBED = ConfigDict(use_attribute_docstrings=True)


@with_config(_DESCRIBED)
class RegionInput(TypedDict, total=False):
    """A region of the photo named by the caller; detection is then skipped."""

    box: Required[list[float]]
    """Pixels of the photo, `[x1, y1, x2, y2]`: left, top, right, bottom (not width and height)."""
    category: str
    """What the region shows: `person`, or an object category such as `dog`; `object` when left out."""
    info: str
    """What to tell the model about the region (who or what it is); given, the region is not recognised."""
    mask: dict[str, Any]
    """The region's exact shape as a COCO RLE mask (`{"size": [h, w], "counts": ...}`); its box is derived."""


@with_config(_DESCRIBED)
class CitationJSON(TypedDict, total=False):
    """One `[n]` of the answer, resolved to the region it cites."""

    index: int
    """The number written in the answer, `[index]`."""
    name: str | None
    """Who or what the cited region is, when known."""
    entity_id: str | None
    """The remembered entity the region was recognised as."""
    box: list[float] | None
    """The cited region in the photo's pixels, `[x1, y1, x2, y2]`."""
    valid: bool
    """False when the number points at no region of the context (the model made it up)."""


@with_config(_DESCRIBED)
class DetectedRegion(TypedDict, total=False):
    """Where a region is in the photo and who found it there."""

    box: list[float]
    """Pixels of the photo, `[x1, y1, x2, y2]`."""
    category: str
    """What the region shows: `person` or an object category."""
    source: str
    """Who found it: `user` (given in `regions`) or the detector that did."""
    score: float | None
    """The detector's confidence, when a detector found it."""
    info: str | None
    """The caller's info for this region, when given."""
    mask: dict[str, Any] | None
    """The region's COCO RLE mask, when one was given."""


@with_config(_DESCRIBED)
class RegionEntryJSON(TypedDict, total=False):
    """A region of the photo with what is known about it: the context the model was given."""

    index: int | None
    """Its `[n]` in the prompt and the answer; null when nothing is known about it (an unknown face)."""
    region: DetectedRegion | None
    """Where it is; null for an entry that comes from memory alone."""
    category: str
    """What it shows: `person` or an object category."""
    name: str | None
    """Who or what it was recognised as."""
    entity_id: str | None
    """The remembered entity it was recognised as."""
    info: str | None
    """What memory (or the caller) says about it."""
    distance: float | None
    """Distance to the nearest reference photo of `name` (smaller is surer)."""


@with_config(_DESCRIBED)
class AnswerJSON(TypedDict, total=False):
    """The answer in structured form (`rcmu_agent.schema.Answer`, or `LibraryAnswer` for a library question)."""

    text: str
    """The answer as the model wrote it, `[n]` citations included."""
    citations: list[CitationJSON]
    """Each `[n]` of the text, resolved to its region."""
    invalid_citations: list[int]
    """Numbers the text cites that point at no region."""
    unanswerable: bool
    """True when the model said it cannot answer from the photo and what is known."""
    regions: list[RegionEntryJSON]
    """Every region of the photo, numbered, with what is known about it."""
    prompt: str
    """The context the model was given (the whole prompt)."""
    context_only: bool
    """True when no model was asked (`context_only` input)."""
    photo: str | None
    """The photo the answer is about, as a vault id (`photo:<hex>`); never a path."""
    unrecognised: list[int]
    """The `[n]` of the regions nobody was recognised at: what a user can name ("[3] is Rose")."""
    change: dict[str, Any] | None
    """A memory change this turn proposed (awaiting the resume), did or declined: `action`, `name`,
    `category`, `info`, `region`, `box`, `reference` (the crop's vault id), `thumbnail`, `status`."""


@with_config(_DESCRIBED)
class InputState(TypedDict, total=False):
    """A turn: the conversation (the last message is the human's text plus at most one image) and options
    that hold for this turn only."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the last message is the human's question, text plus at most one image block."""
    regions: Annotated[list[RegionInput] | None, EphemeralValue(list)]
    """Boxes (pixels `[x1, y1, x2, y2]`, or a COCO RLE `mask`) with optional `category` and `info`, in
    the order `<region1>`, `<region2>`… of the question refer to; detection is skipped."""
    context_only: Annotated[bool, EphemeralValue(bool)]
    """Stop before the model: the AI message shows the context the model would have received."""
    library: Annotated[bool, EphemeralValue(bool)]
    """A question over the indexed photo library (no photo): answered from a collage of the best photos."""
    library_limit: Annotated[int, EphemeralValue(int)]
    """How many library photos the collage holds (default 4)."""


@with_config(_DESCRIBED)
class OutputState(TypedDict, total=False):
    """The conversation with the answer appended, and the answer's structured form (`Answer` as JSON)."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the last message is the answer, its structured form under
    `additional_kwargs["rcmu"]`."""
    answer: AnswerJSON
    """The last answer: text, resolved citations and every region with what is known about it."""
    ui: Annotated[list[AnyUIMessage], ui_message_reducer]
    """LangGraph generative-UI messages: per answer, the `cited_photo` component (the photo as a small
    JPEG data URL, with its numbered, named boxes), tied to the answer's message id."""


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
