"""The graph behind a real `langgraph dev` server, driven with `langgraph-sdk` as a chat front end would.

Two deployments, each its own server process on a free loopback port, both with the bearer-token auth
of `rcmu_agent.server`: one answering with the tiny Qwen2-VL through transformers (the default backend,
which must load and stream without blocking the server's event loop), one with the OpenAI-compatible
backend against the loopback server, whose fixed reply lets the test check citations.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import Reply, build_tiny_qwen2vl, serve
from tests._langgraph_dev import NO_MODEL, human, image_block, run_turn, start_langgraph_dev

pytestmark = pytest.mark.integration  # LangGraph Server as a subprocess

REPLY = "Barack Obama [1] is on the left; Joe Biden [2] is on the right."


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("home")
    alice = Assistant(Settings(home=home, user="alice", **NO_MODEL))
    ref = faces_dir / "reference"
    alice.remember("Barack Obama", info="44th president; loves basketball", photos=[ref / "obama_obama.jpg"])
    alice.remember("Joe Biden", info="46th president", photos=[ref / "biden_biden.jpg"])
    return home


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[str]:
    model = build_tiny_qwen2vl(tmp_path_factory.mktemp("models") / "qwen")
    env = {"RCMU_MODEL": str(model), "RCMU_MAX_NEW_TOKENS": "12"}
    yield from start_langgraph_dev(tmp_path_factory.mktemp("tiny-server"), home, env)


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[str]:
    with serve() as fake:
        fake.default = Reply(text=REPLY, token_delay=0.02)
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": fake.url, "RCMU_MODEL": "m"}
        yield from start_langgraph_dev(tmp_path_factory.mktemp("openai-server"), home, env)


def _image(faces_dir: Path) -> dict[str, Any]:
    return image_block(faces_dir / "scenes" / "two_people.jpg")


def test_schemas_expose_the_chat_interface_typed_and_described(openai_server: str) -> None:
    """What `/assistants/{id}/schemas` publishes (LangGraph Studio's form, typed clients): the chat
    interface only, every field typed and described, down to a region's box and an answer's citations."""

    async def schemas() -> dict[str, Any]:
        from langgraph_sdk import get_client

        client = get_client(url=openai_server, headers={"Authorization": "Bearer token-alice"})
        assistant = (await client.assistants.search(graph_id="rcmu"))[0]
        result: dict[str, Any] = await client.assistants.get_schemas(assistant["assistant_id"])
        return result

    found = asyncio.run(schemas())
    given, out, context = found["input_schema"], found["output_schema"], found["context_schema"]
    assert set(given["properties"]) == {"messages", "regions", "context_only", "library", "library_limit"}
    assert set(out["properties"]) == {"messages", "answer", "ui"}
    for hidden in ("route", "prompt", "entries", "user"):
        assert hidden not in given["properties"] and hidden not in out["properties"]
    for schema in (given, out, context):
        for name, field in schema["properties"].items():
            assert len(field.get("description", "")) > 20, (schema["title"], name)

    def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
        """The object type a field holds (through arrays, nullables and $refs)."""
        if "$ref" in node:
            return resolve(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
        for union in ("anyOf", "oneOf"):
            if union in node:
                return resolve(schema, next(n for n in node[union] if n.get("type") != "null"))
        return resolve(schema, node["items"]) if node.get("type") == "array" else node

    def described(schema: dict[str, Any], node: dict[str, Any], *fields: str) -> dict[str, Any]:
        typed = resolve(schema, node)
        assert typed["type"] == "object" and typed.get("description")
        for name in fields:
            field = typed["properties"][name]
            assert field.get("description") and ({"type", "anyOf", "$ref"} & set(field)), name
        return typed

    region = described(given, given["properties"]["regions"], "box", "category", "info", "mask")
    assert region["required"] == ["box"] and region["properties"]["box"]["items"] == {"type": "number"}
    answer = described(out, out["properties"]["answer"], "text", "citations", "regions", "photo")
    described(out, answer["properties"]["citations"], "index", "name", "box", "valid")
    entry = described(out, answer["properties"]["regions"], "index", "name", "category", "info", "region")
    described(out, entry["properties"]["region"], "box", "category", "source")
    assert context["properties"]["user"]["description"]


def test_tiny_qwen_streams_and_follows_up(tiny_server: str, faces_dir: Path) -> None:
    chunks, values = asyncio.run(
        run_turn(tiny_server, "token-alice", None, {"messages": [human("Who?", _image(faces_dir))]})
    )
    assert len(chunks) > 1  # tokens arrived before the run ended
    answer = values["messages"][-1]
    assert answer["type"] == "ai" and answer["content"] == "".join(chunks).strip()
    photo = answer["additional_kwargs"]["rcmu"]["photo"]
    names = {r["name"] for r in answer["additional_kwargs"]["rcmu"]["regions"]}
    assert names == {"Barack Obama", "Joe Biden"}

    _, follow = asyncio.run(run_turn(tiny_server, "token-alice", values["thread_id"], {"messages": [human("And?")]}))
    assert follow["messages"][-1]["additional_kwargs"]["rcmu"]["photo"] == photo
    assert len(follow["messages"]) == 4


def test_cited_answer_regions_as_json_and_users_kept_apart(openai_server: str, faces_dir: Path) -> None:
    turn = {"messages": [human("Who is on the left?", _image(faces_dir))]}
    chunks, values = asyncio.run(run_turn(openai_server, "token-alice", None, turn))
    assert len(chunks) > 3 and "".join(chunks).strip() == REPLY
    cited = values["messages"][-1]["additional_kwargs"]["rcmu"]["citations"][0]
    assert cited["name"] == "Barack Obama" and [round(v) for v in cited["box"]] == [253, 47, 409, 203]

    regions = {**turn, "regions": [{"box": [740, 40, 1000, 300], "category": "person"}]}
    _, boxed = asyncio.run(run_turn(openai_server, "token-alice", None, regions))
    assert boxed["answer"]["citations"][0]["name"] == "Joe Biden"

    # bob's token: same photo, but alice's people are not his; he cannot read alice's thread either
    _, bob = asyncio.run(run_turn(openai_server, "token-bob", None, turn))
    assert all(r["name"] is None for r in bob["answer"]["regions"])
    assert not any(c["name"] for c in bob["answer"]["citations"])  # the reply's words are the fake server's
    assert "basketball" not in json.dumps(bob) and "44th president" not in json.dumps(bob)
    _, memory = asyncio.run(run_turn(openai_server, "token-bob", None, {"messages": [human("Who is Barack Obama?")]}))
    assert "basketball" not in memory["answer"]["prompt"]
    with pytest.raises(Exception, match=r"404|403|not found|Not Found"):
        asyncio.run(run_turn(openai_server, "token-bob", values["thread_id"], {"messages": [human("And?")]}))

    # a request can neither skip the token nor name a user
    assert httpx.post(f"{openai_server}/threads", json={}, timeout=10).status_code in (401, 403)
    with pytest.raises(Exception, match="authentication"):
        asyncio.run(run_turn(openai_server, "token-bob", None, turn, context={"user": "alice"}))


def test_agent_chat_ui_shapes_its_api_key_and_no_studio_pass_through(openai_server: str, faces_dir: Path) -> None:
    """What Agent Chat UI sends: the token as `X-Api-Key`, the upload as `{"type": "image", "mimeType", "data"}`;
    and LangGraph's Studio pass-through (`x-auth-scheme: langsmith`, no token) is off in the shipped config."""
    data = (faces_dir / "scenes" / "two_people.jpg").read_bytes()
    block = {"type": "image", "mimeType": "image/jpeg", "data": base64.b64encode(data).decode(), "metadata": {}}
    turn = {"messages": [human("Who is on the left?", block)]}
    _, values = asyncio.run(run_turn(openai_server, "token-alice", None, turn))
    assert values["answer"]["citations"][0]["name"] == "Barack Obama"
    by_key = httpx.post(f"{openai_server}/threads/search", json={}, headers={"X-Api-Key": "token-alice"}, timeout=10)
    assert by_key.status_code == 200, by_key.text
    wrong_key = httpx.post(f"{openai_server}/threads/search", json={}, headers={"X-Api-Key": "nope"}, timeout=10)
    assert wrong_key.status_code in (401, 403)
    studio = httpx.post(f"{openai_server}/threads/search", json={}, headers={"x-auth-scheme": "langsmith"}, timeout=10)
    assert studio.status_code in (401, 403), studio.text
