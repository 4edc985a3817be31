"""Agent Chat UI as published today, against a real `langgraph dev` with the shipped auth config.

Each request is what its current code sends (langchain-ai/agent-chat-ui: `src/lib/multimodal-utils.ts`
builds the upload, `src/providers/Stream.tsx` and `client.ts` the connection, `useStream` of
`@langchain/langgraph-sdk` the run, `LoadExternalComponent` the generative UI): the API-key field as
`x-api-key`, the upload as `{"type": "image", "mimeType", "data", "metadata": {"name"}}` in a human
message with its own id, a run streamed with `values`, `messages-tuple` and `custom`, subgraphs and
resumable on, and the component's HTML fetched with `POST /ui/{assistant}`. The answer must come back
cited (Obama and Biden on two_people.jpg, taught as alice), with its drawing in the thread's `ui` state,
and the component's script must load from the server's own address without a token, as a `<script>` tag
in another origin's page does.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import Reply, serve
from tests._langgraph_dev import NO_MODEL, start_langgraph_dev

pytestmark = pytest.mark.integration  # LangGraph Server (and its UI bundler, via npx) as subprocesses

REPLY = "Barack Obama [1] is on the left; Joe Biden [2] is on the right."
UI_ORIGIN = "http://localhost:3000"  # where Agent Chat UI runs (`next dev`)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("home")
    alice = Assistant(Settings(home=home, user="alice", **NO_MODEL))
    ref = faces_dir / "reference"
    alice.remember("Barack Obama", info="44th president", photos=[ref / "obama_obama.jpg"])
    alice.remember("Joe Biden", info="46th president", photos=[ref / "biden_biden.jpg"])
    return home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[str]:
    with serve() as fake:
        fake.default = Reply(text=REPLY, token_delay=0.01)
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": fake.url, "RCMU_MODEL": "m"}
        yield from start_langgraph_dev(tmp_path_factory.mktemp("chat-ui-server"), home, env)


def _headers(api_key: str | None = "token-alice") -> dict[str, str]:
    """What the JS SDK's client sends from Agent Chat UI's page."""
    headers = {"content-type": "application/json", "origin": UI_ORIGIN}
    return {**headers, "x-api-key": api_key} if api_key else headers


def _upload(path: Path) -> dict[str, Any]:
    """multimodal-utils.ts `fileToContentBlock` for a JPEG."""
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "image", "mimeType": "image/jpeg", "data": data, "metadata": {"name": path.name}}


def _human(text: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    """thread/index.tsx `handleSubmit`: a human message with a fresh id, text first, then the uploads."""
    return {"id": str(uuid.uuid4()), "type": "human", "content": [{"type": "text", "text": text}, *blocks]}


def _submit(url: str, thread: str, message: dict[str, Any]) -> list[tuple[str, Any]]:
    """`stream.submit({messages: [message]}, {streamMode: ["values"], streamSubgraphs: true,
    streamResumable: true})` as useStream turns it into a request (`onCustomEvent` adds `custom`, the
    messages view adds `messages-tuple`); the SSE events as (event, data)."""
    body = {
        "input": {"messages": [message]},
        "on_disconnect": "continue",
        "stream_mode": ["values", "messages-tuple", "custom"],
        "stream_subgraphs": True,
        "stream_resumable": True,
        "assistant_id": "rcmu",
    }
    events: list[tuple[str, Any]] = []
    with httpx.stream(
        "POST", f"{url}/threads/{thread}/runs/stream", json=body, headers=_headers(), timeout=120
    ) as response:
        assert response.status_code == 200, response.read()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event:
                events.append((event, json.loads(line.partition(":")[2])))
    errors = [data for event, data in events if event == "error"]
    assert not errors, errors
    return events


def _component_script(url: str) -> str:
    """`LoadExternalComponent` → `POST /ui/rcmu {"name"}` with the client's headers; waits for the
    bundle, which `langgraph dev` builds at start."""
    deadline = time.monotonic() + 180
    while True:
        tags = httpx.post(f"{url}/ui/rcmu", json={"name": "cited_photo"}, headers=_headers(), timeout=10)
        if tags.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert tags.status_code == 200, tags.text
    return tags.text


def test_an_upload_from_agent_chat_ui_is_answered_and_drawn(server: str, faces_dir: Path, home: Path) -> None:
    photo = faces_dir / "scenes" / "two_people.jpg"
    assert httpx.get(f"{server}/info", headers={"X-Api-Key": "token-alice"}, timeout=10).status_code == 200
    thread = httpx.post(f"{server}/threads", json={}, headers=_headers(), timeout=10).json()["thread_id"]

    events = _submit(server, thread, _human("Who is on the left?", _upload(photo)))
    tokens = [d[0]["content"] for e, d in events if e == "messages" and d[1].get("langgraph_node") == "answer"]
    assert len(tokens) > 3 and "".join(tokens).strip() == REPLY  # streamed, not only at the end
    values = [d for e, d in events if e == "values"][-1]
    answer = values["messages"][-1]
    assert answer["type"] == "ai" and answer["content"] == REPLY
    cited = answer["additional_kwargs"]["rcmu"]["citations"]  # what a client without generative UI reads
    assert [(c["index"], c["name"]) for c in cited] == [(1, "Barack Obama"), (2, "Joe Biden")]
    assert [round(v) for v in cited[0]["box"]] == [253, 47, 409, 203]

    # the drawing: streamed as a custom event and kept in the thread's `ui`, under this answer's id
    (drawn,) = values["ui"]
    assert [d for e, d in events if e == "custom"] == [drawn]
    assert drawn["name"] == "cited_photo" and drawn["metadata"]["message_id"] == answer["id"]
    props = drawn["props"]
    regions = {r["name"]: r for r in props["regions"]}
    assert set(regions) == {"Barack Obama", "Joe Biden"} and all(r["cited"] for r in regions.values())
    assert [round(v) for v in regions["Barack Obama"]["box"]] == [253, 47, 409, 203]
    with Image.open(photo) as original:
        assert (props["width"], props["height"]) == original.size
    head, _, data = props["image"].partition(",")
    picture = Image.open(io.BytesIO(base64.b64decode(data)))
    assert head == "data:image/jpeg;base64" and picture.format == "JPEG" and max(picture.size) <= 640
    assert str(home) not in json.dumps(drawn) and props["photo"].startswith("photo:")

    # what Agent Chat UI reloads a thread from (useStream's fetchStateHistory)
    history = httpx.post(f"{server}/threads/{thread}/history", json={"limit": 10}, headers=_headers(), timeout=10)
    assert history.status_code == 200 and history.json()[0]["values"]["ui"] == [drawn]

    # a follow-up in the thread: drawn again under its own answer, the picture by reference
    follow = [d for e, d in _submit(server, thread, _human("And who is on the right?")) if e == "values"][-1]
    assert len(follow["ui"]) == 2 and follow["ui"][1]["metadata"]["message_id"] == follow["messages"][-1]["id"]
    assert follow["ui"][1]["props"]["image"] is None and follow["ui"][1]["props"]["photo"] == props["photo"]


def test_the_component_loads_from_the_servers_own_address_without_a_token(server: str) -> None:
    tags = _component_script(server)
    src = re.search(r'<script src="([^"]+)"', tags)
    assert src and src.group(1) == f"{server}/ui/rcmu/entrypoint.js", tags  # not relative to the UI's page
    assert "__LGUI_rcmu.render(&quot;cited_photo&quot;" in tags and "{{shadowRootId}}" in tags
    script = httpx.get(src.group(1), headers={"origin": UI_ORIGIN}, timeout=10)  # a <script> tag sends no key
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "var __LGUI_rcmu" in script.text and "cited_photo" in script.text and "data-cite" in script.text
    assert httpx.get(f"{server}/ui/rcmu/schemas.json", timeout=10).status_code == 404  # bundle files only
    assert httpx.get(f"{server}/ui/rcmu/..%2F..%2Fschemas.json", timeout=10).status_code == 404
    assert httpx.post(f"{server}/ui/nope", json={"name": "cited_photo"}, timeout=10).status_code == 404
    paths = httpx.get(f"{server}/openapi.json", timeout=10).json()["paths"]  # documented, not a parse warning
    assert "public, no token" in paths["/ui/{graph_id}/{file}"]["get"]["summary"]
    # behind a TLS-terminating proxy: the page is https, so must the script be (mixed content is blocked)
    proxied = {**_headers(), "x-forwarded-proto": "https"}
    behind = httpx.post(f"{server}/ui/rcmu", json={"name": "cited_photo"}, headers=proxied, timeout=10)
    assert f'src="{server.replace("http://", "https://")}/ui/rcmu/entrypoint.js"' in behind.text


def test_api_key_login_and_no_studio_pass_through(server: str) -> None:
    """The API-key field logs in (Agent Builder's `X-Auth-Scheme` alongside changes nothing); a wrong
    key, no key, and LangGraph Studio's pass-through (`x-auth-scheme: langsmith`, no token) do not."""
    search = f"{server}/threads/search"
    assert httpx.post(search, json={}, headers=_headers(), timeout=10).status_code == 200
    builder = {**_headers(), "X-Auth-Scheme": "langsmith-api-key"}
    assert httpx.post(search, json={}, headers=builder, timeout=10).status_code == 200
    for refused in (_headers("wrong"), _headers(None), {**_headers(None), "x-auth-scheme": "langsmith"}):
        response = httpx.post(search, json={}, headers=refused, timeout=10)
        assert response.status_code in (401, 403), (refused, response.text)
