"""The answer drawn for chat front ends with LangGraph generative UI: the photo, its numbered boxes.

An answer's `[n]` are plain text to a chat window; the boxes they cite sit in the message's
`additional_kwargs["rcmu"]`, which no stock front end draws. So the cite step also pushes a UI message
(`push_ui_message`, component `cited_photo` in ui/cited_photo.tsx, declared in langgraph.json `ui`)
tied to the AI message by id, which Agent Chat UI and LangGraph Studio render under that answer.
Clients without generative UI ignore it and keep the text and the structured part.

The props are the picture and the boxes, never a server path: the photo as a small JPEG data URL, so
the browser needs no second request (and no token) to show it. It is sent once per photo in a thread;
a follow-up about the same photo names it by id, and the component takes the picture from the earlier
UI message, so a text-only turn adds a few hundred bytes to the thread, not a picture.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage
from PIL import Image

from rcmu_agent.schema import Answer

__all__ = ["COMPONENT", "MAX_SIDE", "answer_view", "push_answer_view"]

COMPONENT = "cited_photo"
MAX_SIDE = 640  # pixels of the picture's longer side: sharp in a chat column, ~30-60 KB as JPEG
_QUALITY = 80


def answer_view(answer: Answer, image: Image.Image | None, *, with_picture: bool) -> dict[str, Any]:
    """The component's props: every region with a box, numbered as the prompt numbered them (in that
    order), in the photo's own pixels (`width` × `height`), marked `cited` when the answer cites it; and, when asked,
    the picture as a data URL."""
    cited = {c.index for c in answer.citations if c.valid}
    regions = [
        {
            "index": entry.index,
            "name": entry.name,
            "category": entry.category or entry.region.category,
            "box": [round(float(v), 1) for v in entry.region.box],
            "cited": entry.index in cited,
        }
        for entry in sorted(answer.regions, key=lambda e: e.index or 0)
        if entry.region is not None and entry.index is not None
    ]
    width, height = image.size if image is not None else (0, 0)
    picture = _data_url(image) if image is not None and with_picture else None
    return {"photo": answer.photo, "image": picture, "width": width, "height": height, "regions": regions}


def push_answer_view(
    answer: Answer,
    message: AIMessage,
    shown: Sequence[Mapping[str, Any]] | None,
    image: Callable[[str], Image.Image],
) -> None:
    """Push the `cited_photo` UI message for `message` (the answer's AI message, which must carry its
    id) into the run's stream and the thread's `ui` state. `shown` is the thread's `ui` so far: the
    picture is left out when an earlier message already carries this photo's. An answer with no photo
    (memory only) or no boxed region draws nothing."""
    from langgraph.graph.ui import push_ui_message

    if not answer.photo or not any(e.region is not None for e in answer.regions):
        return
    if message.id is None:
        raise ValueError("the answer message needs its id before a UI message can point at it")
    seen = any(
        m.get("name") == COMPONENT and (m.get("props") or {}).get("photo") == answer.photo and m["props"].get("image")
        for m in shown or ()
    )
    props = answer_view(answer, image(answer.photo), with_picture=not seen)
    push_ui_message(COMPONENT, props, id=f"{message.id}-photo", message=message)


def _data_url(image: Image.Image) -> str:
    small = image.convert("RGB")
    small.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
