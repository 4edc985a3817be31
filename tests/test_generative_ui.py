"""The answer's generative-UI message: the photo as a small JPEG data URL with the numbered, named boxes
in the photo's own pixels, pushed into the stream and the thread's `ui` state, tied to the answer's
message; the picture is sent once per photo in a thread (tests/test_agent_chat_ui.py runs it through a
real `langgraph dev`)."""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.ui import AnyUIMessage, ui_message_reducer
from PIL import Image
from typing_extensions import TypedDict

from rcmu_agent.generative_ui import COMPONENT, MAX_SIDE, answer_view, push_answer_view
from rcmu_agent.schema import Answer, Citation, ContextEntry, Region

pytestmark = pytest.mark.unit

PHOTO_ID = "photo:" + "cd" * 16
IMAGE = Image.new("RGB", (1200, 800), (90, 120, 160))
ANSWER = Answer(
    text="Barack Obama [1] is on the left; Joe Biden [2] is on the right.",
    citations=[Citation(index=1, name="Barack Obama", box=(250, 50, 410, 200))],
    regions=[
        ContextEntry(region=Region(box=(250, 50, 410, 200), category="person"), index=1, name="Barack Obama"),
        ContextEntry(region=Region(box=(740, 40, 1000, 300), category="person"), index=2, name="Joe Biden"),
        ContextEntry(region=Region(box=(10, 10, 60, 60), category="person"), index=None),  # unknown: not numbered
    ],
    photo=PHOTO_ID,
)


def _decoded(data_url: str) -> Image.Image:
    head, _, payload = data_url.partition(",")
    assert head == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_the_view_is_the_picture_and_numbered_boxes_in_the_photos_pixels() -> None:
    view = answer_view(ANSWER, IMAGE, with_picture=True)
    assert (view["photo"], view["width"], view["height"]) == (PHOTO_ID, 1200, 800)
    assert view["regions"] == [
        {"index": 1, "name": "Barack Obama", "category": "person", "box": [250.0, 50.0, 410.0, 200.0], "cited": True},
        {"index": 2, "name": "Joe Biden", "category": "person", "box": [740.0, 40.0, 1000.0, 300.0], "cited": False},
    ]
    picture = _decoded(view["image"])
    assert picture.format == "JPEG" and picture.size == (MAX_SIDE, 427)  # 1200 x 800 scaled
    assert len(view["image"]) < 60_000
    assert answer_view(ANSWER, IMAGE, with_picture=False)["image"] is None


class _State(TypedDict, total=False):
    ui: Annotated[list[AnyUIMessage], ui_message_reducer]
    n: int


def _graph(answer: Answer) -> Any:
    def cite(state: _State) -> dict[str, Any]:
        message = AIMessage(content=answer.text, id=f"answer-{state.get('n', 0)}")
        push_answer_view(answer, message, state.get("ui"), lambda pid: IMAGE)
        return {"n": state.get("n", 0) + 1}

    return StateGraph(_State).add_node("cite", cite).add_edge(START, "cite").add_edge("cite", END).compile()


def test_pushed_into_the_stream_and_the_state_the_picture_once_per_photo() -> None:
    graph = _graph(ANSWER)
    events = list(graph.stream({"n": 0}, stream_mode=["custom", "values"]))
    custom = [data for mode, data in events if mode == "custom"]
    values = [data for mode, data in events if mode == "values"][-1]
    assert len(custom) == 1 and values["ui"] == custom
    first = custom[0]
    assert first["type"] == "ui" and first["name"] == COMPONENT and first["id"] == "answer-0-photo"
    assert first["metadata"]["message_id"] == "answer-0"  # Agent Chat UI draws it under that message
    assert first["props"]["image"].startswith("data:image/jpeg;base64,")

    follow = graph.invoke(values)  # a follow-up about the same photo: boxes again, the picture by reference
    assert [m["metadata"]["message_id"] for m in follow["ui"]] == ["answer-0", "answer-1"]
    assert follow["ui"][1]["props"]["image"] is None and follow["ui"][1]["props"]["photo"] == PHOTO_ID
    assert len(str(follow["ui"][1])) < 1_000


def test_an_answer_without_photo_or_boxes_draws_nothing() -> None:
    memory_only = Answer(text="Obama [1] loves basketball.", regions=[ContextEntry(category="person", index=1)])
    assert not _graph(memory_only).invoke({"n": 0}).get("ui")
    assert not _graph(memory_only.model_copy(update={"photo": PHOTO_ID})).invoke({"n": 0}).get("ui")
