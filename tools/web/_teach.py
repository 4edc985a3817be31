"""The Chat tab's "who is this?": name an unrecognised region of the answer, see the crop that would be
remembered, and Confirm, Edit or Cancel — the graph's own confirm step (`Assistant.teach` / `resume`).

An answer's unknown regions are its `unrecognised` numbers: each is a button in the photo's legend
(`[n] unknown person`, clicked or reached by keyboard) and a choice in this panel's list. Typing
"[2] is Rose" in the question box proposes the same change, and the page shows the same card. The
user is the page's login, as everywhere in the web app; the form never names one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.prompt import shown_text
from rcmu_agent.schema import Answer, MemoryChange
from rcmu_agent.teach_dialogue import read_decision
from rcmu_agent.tools.web import _handlers as act
from rcmu_agent.tools.web._page import said

__all__ = ["TeachPanel", "decide", "proposal_card", "teach_panel", "typed_decision", "unknown_choices"]

UserOf = Callable[[gr.Request], str]
_LEGEND = re.compile(r"^\[(\d+)\] unknown ")
PICK_HINT = "Click an unknown [n] under the photo, or choose it here, then say who it is."


def unknown_choices(answer: Answer) -> list[tuple[str, int]]:
    """The answer's unrecognised regions as the list offers them: `[n] unknown person`, valued n."""
    shown = {e.index: e for e in answer.regions if e.index is not None}
    return [(f"[{n}] unknown {shown_text(shown[n].category)}", n) for n in answer.unrecognised if n in shown]


def proposal_card(change: MemoryChange) -> str:
    """The proposed change as a person checks it: the crop that becomes the reference photo, who, which
    region and box, and the info — escaped, as every part came from a user or a photo."""
    who = html.escape(shown_text(change.name or ""))
    kind = html.escape(shown_text(change.category or "person"))
    where = f"region [{change.region}]" if change.region is not None else "the whole photo"
    box = "(" + ", ".join(f"{v:.0f}" for v in change.box) + ")" if change.box is not None else "—"
    info = html.escape(shown_text(change.info or "")) or "—"
    adding = "Add this photo to" if change.existing else "Remember"
    verb = {"forget": "Forget", "update": "Update"}.get(change.action, adding)
    image = (
        f'<img src="{html.escape(change.thumbnail, quote=True)}" alt="the crop of {where} that becomes a reference '
        f'photo of {who}">'
        if change.thumbnail
        else ""
    )
    return (
        f'<section class="rcmu-proposal" aria-label="proposed memory change">{image}<div>'
        f"<h4>{verb} {who}?</h4><dl>"
        f"<dt>who</dt><dd>{who} ({kind})</dd><dt>where</dt><dd>{where}</dd>"
        f"<dt>box</dt><dd>{box}</dd><dt>info</dt><dd>{info}</dd></dl>"
        "<p>Confirm writes it to your memory; Edit saves it with the name, info and category above; "
        "Cancel writes nothing.</p></div></section>"
    )


def typed_decision(state: act.ChatSession, text: str) -> bool | None:
    """A "yes" or "no" typed while a change awaits one answers it; anything else is a new turn."""
    if not state.proposing:
        return None
    try:
        decision = read_decision(text)
    except InvalidInputError:
        return None
    return decision if isinstance(decision, bool) else None


def decide(
    assistant: Assistant, user: str, state: act.ChatSession, decision: bool | dict[str, str]
) -> tuple[Answer, Any]:
    """Answer the thread's proposed change (`Assistant.resume`): the answer, and the photo's boxes
    relabelled (or left as they are when the answer has none)."""
    answer = assistant.resume(_thread(state), decision, user=user)
    state.proposing = answer.change is not None and answer.change.status == "proposed"
    if not (answer.photo and answer.regions):
        return answer, gr.skip()
    return answer, act.labelled(assistant.photo(answer.photo, user=user), answer.regions)


def _thread(state: act.ChatSession) -> str:
    """The conversation's graph thread, once a photo has been asked about (`stream_answer` names it so)."""
    if state is None or state.photo is None or not state.sent:
        raise InvalidInputError("there is no answer about a photo yet", "upload a photo and ask about it first")
    return f"web-{state.thread}"


@dataclass(frozen=True)
class TeachPanel:
    """The panel's parts; `outputs` are what every answer updates (`shown`)."""

    panel: Any
    region: Any
    name: Any
    info: Any
    category: Any
    status: Any
    card: Any
    decide: Any

    @property
    def outputs(self) -> list[Any]:
        return [self.panel, self.region, self.status, self.card, self.decide, self.name, self.info, self.category]

    @staticmethod
    def shown(answer: Answer | None) -> tuple[Any, ...]:
        """The panel after `answer`: its card while a change awaits a yes, else its unknown regions to name
        (hidden when there are none); None hides it (a new photo)."""
        if answer is None:
            hidden = gr.update(visible=False), gr.update(choices=[], value=None), "", "", gr.update(visible=False)
            return *hidden, "", "", "person"
        change = answer.change
        if change is not None and change.status == "proposed":
            problem = answer.text.split("\n")[0] if "\n" in answer.text else ""  # a resume it could not use
            note = f"⚠ {problem}" if problem else ""
            shown = gr.update(visible=True), gr.skip(), note, proposal_card(change), gr.update(visible=True)
            return *shown, change.name or "", change.info or "", change.category or "person"  # what Edit starts from
        choices = unknown_choices(answer)
        only = choices[0][1] if len(choices) == 1 else None  # one left to name: already chosen
        keep = gr.update(visible=bool(choices), choices=choices, value=only)
        done = change is not None and change.status != "proposed"
        form = ("", "", "person") if done else (gr.skip(),) * 3  # a clean form once a change is answered
        return gr.update(visible=bool(choices)), keep, "", "", gr.update(visible=False), *form

    @staticmethod
    def quiet() -> tuple[Any, ...]:
        """While a new turn runs: the card and its buttons go (a new turn leaves a proposal unanswered)."""
        return gr.skip(), gr.skip(), "", "", gr.update(visible=False), gr.skip(), gr.skip(), gr.skip()


def teach_panel(assistant: Assistant, user_of: UserOf, session: Any, chat: Any, boxes: Any) -> TeachPanel:
    """Build the panel under the chat and wire it: propose, then Confirm / Edit / Cancel."""
    with gr.Column(visible=False, elem_id="name-panel") as panel:
        gr.Markdown("### Who is this?\n" + PICK_HINT)
        region = gr.Radio(label="Unknown region", choices=[], elem_id="name-region")
        with gr.Row():
            name = gr.Textbox(label="Name", placeholder="Rose Leslie", elem_id="name-name")
            category = gr.Textbox(label="Category", value="person", elem_id="name-category")
        info = gr.Textbox(label="Info (optional)", placeholder="my sister; adopted Bella in 2022", elem_id="name-info")
        propose = gr.Button("Name this region", elem_id="name-propose")
        status = gr.Markdown("", elem_id="name-status", elem_classes=["rcmu-status"])
        card = gr.HTML("", elem_id="name-card")
        with gr.Row(visible=False, elem_id="name-decide") as verdict:
            confirm = gr.Button("Confirm", variant="primary", elem_id="name-confirm")
            edit = gr.Button("Edit", elem_id="name-edit")
            cancel = gr.Button("Cancel", variant="stop", elem_id="name-cancel")
    parts = TeachPanel(panel, region, name, info, category, status, card, verdict)

    def picked(evt: gr.SelectData) -> Any:
        """A legend button of the photo: an unknown one is chosen in the list; a named one is left be."""
        found = _LEGEND.match(str(evt.value or ""))
        return int(found.group(1)) if found else gr.skip()

    def proposed(
        n: int | None, who: str, text: str, kind: str, history: list[Any], state: act.ChatSession, request: gr.Request
    ) -> tuple[Any, ...]:
        try:
            if n is None:
                raise InvalidInputError("no region is chosen", "click an unknown [n] under the photo, or choose one")
            if not who.strip():
                raise InvalidInputError("no name is given", "type who this is in Name")
            answer = assistant.teach(
                _thread(state), int(n), who.strip(), info=text.strip() or None, category=kind.strip() or None,
                user=user_of(request),
            )  # fmt: skip
        except Exception as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), said(exc), *(gr.skip(),) * 5
        state.proposing = answer.change is not None and answer.change.status == "proposed"
        said_here = f"[{n}] is {who.strip()}" + (f"; {text.strip()}" if text.strip() else "")
        reply = [{"role": "user", "content": said_here}, {"role": "assistant", "content": answer.text}]
        return [*history, *reply], state, *parts.shown(answer)

    def decided(decision: Any) -> Callable[..., tuple[Any, ...]]:
        def run(
            who: str, text: str, kind: str, history: list[Any], state: act.ChatSession, request: gr.Request
        ) -> tuple[Any, ...]:
            value = decision
            if decision == "edit":
                fields = {"name": who, "info": text, "category": kind}
                value = {k: v.strip() for k, v in fields.items() if v.strip()}
            try:
                answer, drawn = decide(assistant, user_of(request), state, value)
            except Exception as exc:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), said(exc), *(gr.skip(),) * 5
            reply = {"role": "assistant", "content": answer.text}
            return [*history, reply], state, drawn, *parts.shown(answer)

        return run

    inputs = [name, info, category, chat, session]
    boxes.select(picked, None, region)
    propose.click(proposed, [region, *inputs], [chat, session, *parts.outputs])
    for button, decision in ((confirm, True), (edit, "edit"), (cancel, False)):
        button.click(decided(decision), inputs, [chat, session, boxes, *parts.outputs])
    return parts
