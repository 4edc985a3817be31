"""The graph's memory-change steps: `propose` (check the change against the photo and the memory) and
`confirm` (an `interrupt` with the proposal; write only on a yes, or an edit).

`route` decides a turn is a memory change (`rcmu_agent.teach_grammar`, or the chat model); the photo,
when the turn brings one, is detected and recognised first, so "this is Bella, my dog" works on the
photo it arrives with. Every step takes its user from the run (`Nodes._user`), never from the state
or the text: a thread's owner can rewrite the state, but only ever writes into their own memory.
"""

from __future__ import annotations

from typing import Any

from rcmu_agent._nodes import Nodes, dump, load
from rcmu_agent.citations import number_regions
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.schema import Answer, ContextEntry, MemoryChange, Region
from rcmu_agent.state import AgentState
from rcmu_agent.teach import apply_change, edited, propose
from rcmu_agent.teach_dialogue import done_text, interrupt_payload, listing, read_decision
from rcmu_agent.teach_grammar import Intent

__all__ = ["TeachNodes"]


class TeachNodes:
    """`propose` and `confirm`, sharing the answer steps' parts and their way of finding the user."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.parts = nodes.parts

    def propose(self, state: AgentState) -> dict[str, Any]:
        """The change, checked; "who do you know?" is answered here (nothing to confirm)."""
        user = self.nodes._user()
        intent = Intent(**(state.get("intent") or {}))
        entries = number_regions(load(ContextEntry, state.get("entries")))
        if intent.action == "list":
            change = MemoryChange(action="list", status="done")
            text = listing(self.parts.memory.entities(user))
            return {"change": None, **self._reply(text, change, entries, state)}
        change = propose(self.parts, user, intent, photo=state.get("photo"), entries=entries)
        return {"change": change.model_dump(mode="json"), "entries": dump(entries)}

    def confirm(self, state: AgentState) -> dict[str, Any]:
        """Pause with the proposal (LangGraph `interrupt`); resumed with yes, no or an edit. Nothing is
        written before that resume: a new turn instead of a resume leaves the memory as it was."""
        from langgraph.types import interrupt

        user = self.nodes._user()
        change = MemoryChange.model_validate(state.get("change"))
        payload = interrupt_payload(change)
        while True:  # a resume that cannot be used asks again, saying why (an error would stick to the thread)
            try:
                decision = read_decision(interrupt(payload))
                if isinstance(decision, dict):
                    change, decision = edited(self.parts, user, change, decision), True
                break
            except InvalidInputError as exc:
                payload = {**interrupt_payload(change), "error": str(exc)}
        entries = load(ContextEntry, state.get("entries"))
        if not decision:
            change = change.model_copy(update={"status": "declined"})
        else:
            change = apply_change(self.parts, user, change)
            detected = load(Region, state.get("detected"))
            if detected and state.get("photo"):  # learning shows at once: the photo is recognised again
                entries = number_regions(self.parts.recognizer.match(user, detected))
        return {"change": change.model_dump(mode="json"), **self._reply(done_text(change), change, entries, state)}

    def _reply(self, text: str, change: MemoryChange, entries: list[ContextEntry], state: AgentState) -> dict[str, Any]:
        """The turn's answer: the text, the photo's regions as they are numbered now, and the change."""
        regions = [e for e in entries if e.region is not None]
        if regions and change.action != "list":
            text += "\nIn the photo now: " + "; ".join(_legend(e) for e in sorted(regions, key=lambda e: e.index or 0))
        answer = Answer(text=text, regions=regions, photo=state.get("photo"), change=change)
        message = self.nodes._message(answer, state)  # as an answer: chat front ends draw the photo's regions
        return {"entries": dump(entries), "answer": answer.model_dump(mode="json"), "messages": [message]}


def _legend(entry: ContextEntry) -> str:
    from rcmu_agent.prompt import shown_text

    who = shown_text(entry.name) if entry.name else f"an unrecognised {shown_text(entry.category)}"
    return f"[{entry.index}] {who}"
