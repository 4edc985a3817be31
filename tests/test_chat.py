"""The graph as a chat agent, in process: messages in, streamed tokens and an AI message out.

Real dlib, real Chroma, the tiny Qwen2-VL through transformers' streamer, and the OpenAI-compatible
backend streaming server-sent events from a loopback server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from rcmu_agent import Assistant, Settings
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.graph import build_graph
from rcmu_agent.messages import ANSWER_KEY
from rcmu_agent.parts import Parts
from rcmu_agent.state import Context
from rcmu_agent.testing import Reply, build_tiny_qwen2vl, serve
from rcmu_agent.vault import is_photo_id, photo_id

pytestmark = pytest.mark.integration  # the chat graph over a loopback server, dlib, MiniLM, Chroma, a tiny VLM

NO_MODEL: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}
OBAMA_FACE = (253, 47, 409, 203)  # in two_people.jpg (1126x661)
REPLY = "Barack Obama [1] is on the left; Joe Biden [2] is on the right."


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("home")
    teacher = Assistant(Settings(home=home, user="alice", **NO_MODEL))
    ref = faces_dir / "reference"
    teacher.remember("Barack Obama", info="44th president; loves basketball", photos=[ref / "obama_obama.jpg"])
    teacher.remember("Joe Biden", info="46th president", photos=[ref / "biden_biden.jpg"])
    return home


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("models") / "qwen")


@pytest.fixture()
def scene_block(faces_dir: Path) -> dict[str, Any]:
    data = base64.b64encode((faces_dir / "scenes" / "two_people.jpg").read_bytes()).decode()
    return {"type": "image", "base64": data, "mime_type": "image/jpeg"}


def ask(text: str, image: dict[str, Any] | None = None) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": text}, *([image] if image else [])])


def server_graph(home: Path, url: str, *, threads: bool = False) -> Any:
    """The graph as LangGraph Server runs it (not a local caller), answering through the loopback server."""
    settings = Settings(home=home, user="alice", backend="openai", base_url=url, model="m", **NO_MODEL)
    return build_graph(Parts(settings), checkpointer=InMemorySaver() if threads else None)


def test_schemas_are_small_and_json_on_this_python(home: Path) -> None:
    graph = build_graph(Parts(Settings(home=home, **NO_MODEL)))
    inputs = graph.get_input_jsonschema()["properties"]
    outputs = graph.get_output_jsonschema()["properties"]
    assert set(inputs) == {"messages", "regions", "context_only", "library", "library_limit"}
    assert set(outputs) == {"messages", "answer", "ui"}  # ui: generative-UI messages (Agent Chat UI draws them)
    assert graph.get_context_jsonschema()["properties"]["user"]


def test_base64_image_block_answered_with_citations_and_tokens_streamed(home: Path, scene_block: dict) -> None:
    with serve() as server:
        server.default = Reply(text=REPLY)
        graph = server_graph(home, server.url, threads=True)
        chunks: list[AIMessageChunk] = []
        final: dict[str, Any] = {}
        config = {"configurable": {"thread_id": "t1"}}
        for mode, data in graph.stream(
            {"messages": [ask("Who is on the left?", scene_block)]}, config, stream_mode=["messages", "values"]
        ):
            if mode == "messages" and isinstance(data[0], AIMessageChunk):
                assert data[1]["langgraph_node"] == "answer"
                chunks.append(data[0])
            elif mode == "values":
                final = data
        assert len(chunks) > 3 and "".join(c.text for c in chunks).strip() == REPLY
        message = final["messages"][-1]
        assert isinstance(message, AIMessage) and message.text == REPLY
        assert message.id == chunks[0].id  # one message in a chat UI: the final replaces the streamed one
        payload = message.additional_kwargs[ANSWER_KEY]
        left = payload["citations"][0]
        assert left["name"] == "Barack Obama" and [round(v) for v in left["box"]] == list(OBAMA_FACE)
        assert payload["unanswerable"] is False and is_photo_id(payload["photo"])
        assert final["answer"]["citations"][1]["name"] == "Joe Biden"

        # a follow-up without an image is about the same photo, and sends the same photo again
        follow = graph.invoke({"messages": [ask("And who is on the right?")]}, config)
        assert set(follow) == {"messages", "answer", "ui"}  # the output schema, not the internals
        assert follow["answer"]["photo"] == payload["photo"]
        assert follow["answer"]["citations"][1]["name"] == "Joe Biden"
        assert server.requests[-1].body["messages"][0]["content"][0]["type"] == "image_url"
        assert len(follow["messages"]) == 4


def test_tiny_qwen_streams_tokens_through_transformers(home: Path, tiny_model: Path, scene_block: dict) -> None:
    settings = Settings(home=home, user="alice", model=str(tiny_model), max_new_tokens=12, **NO_MODEL)
    graph = build_graph(Parts(settings))
    pieces = [
        m.text
        for m, meta in graph.stream({"messages": [ask("Who is on the left?", scene_block)]}, stream_mode="messages")
        if isinstance(m, AIMessageChunk) and meta["langgraph_node"] == "answer" and m.text
    ]
    assert len(pieces) > 1
    answer = graph.invoke({"messages": [ask("Who is on the left?", scene_block)]})["answer"]
    assert answer["text"] == "".join(pieces).strip()  # streamed or not, the same greedy answer


def test_async_stream_from_the_loopback_server(home: Path, scene_block: dict) -> None:
    async def run(url: str) -> list[str]:
        graph = server_graph(home, url)
        out = []
        async for message, _meta in graph.astream(
            {"messages": [ask("Who is on the left?", scene_block)]}, stream_mode="messages"
        ):
            if isinstance(message, AIMessageChunk) and message.text:
                out.append(message.text)
        return out

    with serve() as server:
        server.default = Reply(text=REPLY, token_delay=0.01)
        assert "".join(asyncio.run(run(server.url))).strip() == REPLY


def test_regions_as_json_and_bad_regions_do_not_poison_the_thread(home: Path, scene_block: dict) -> None:
    with serve() as server:
        server.default = Reply(text="It is [1].")
        graph = server_graph(home, server.url, threads=True)
        config = {"configurable": {"thread_id": "regions"}}
        bad = {"messages": [ask("What is <region1>?", scene_block)], "regions": [{"box": [10, 10, 5, 5]}]}
        with pytest.raises(InvalidInputError, match=r"regions\[0\]\.box.*inverted"):
            graph.invoke(bad, config)
        good = {
            "messages": [ask("What is <region1>?", scene_block)],
            "regions": [{"box": [740, 40, 1000, 300], "category": "person"}],
        }
        answer = graph.invoke(good, config)["answer"]
        assert answer["citations"][0]["name"] == "Joe Biden"  # the face inside the box was recognised
        assert "<region1>" not in answer["prompt"] and "[1]" in answer["prompt"]
        # the regions were for that turn only: the next turn without regions reuses the thread's photo
        again = graph.invoke({"messages": [ask("Who is on the left?")]}, config)["answer"]
        assert len(again["regions"]) == 1 and again["photo"] == answer["photo"]


def test_per_turn_options_do_not_carry_over(home: Path, scene_block: dict) -> None:
    with serve() as server:
        server.default = Reply(text=REPLY)
        graph = server_graph(home, server.url, threads=True)
        config = {"configurable": {"thread_id": "options"}}
        first = graph.invoke({"messages": [ask("Who?", scene_block)], "context_only": True}, config)
        assert first["answer"]["context_only"] and "would have received" in first["messages"][-1].text
        assert not server.requests
        second = graph.invoke({"messages": [ask("Who is on the left?")]}, config)
        assert second["answer"]["text"] == REPLY and len(server.requests) == 1
        assert len({m.id for m in second["messages"]}) == 4  # no message replaced another


def test_user_comes_from_auth_or_the_deployment_never_the_request(home: Path, scene_block: dict) -> None:
    with serve() as server:
        server.default = Reply(text=REPLY)
        graph = server_graph(home, server.url)
        turn = {"messages": [ask("Who is on the left?", scene_block)]}
        with pytest.raises(InvalidInputError, match="takes no user from the request"):
            graph.invoke(turn, context=Context(user="bob"))
        bob = {"configurable": {"langgraph_auth_user_id": "bob"}}
        answer = graph.invoke(turn, bob)["answer"]
        assert all(r["name"] is None for r in answer["regions"]) and not answer["citations"][0]["name"]
        with pytest.raises(InvalidInputError, match="set by the server's authentication"):
            graph.invoke(turn, bob, context=Context(user="alice"))
        alice = graph.invoke(turn, {"configurable": {"langgraph_auth_user_id": "alice"}})["answer"]
        assert alice["citations"][0]["name"] == "Barack Obama"


def test_server_graph_reads_paths_only_inside_allowed_roots(home: Path, faces_dir: Path) -> None:
    scene = faces_dir / "scenes" / "two_people.jpg"
    block = {"type": "image", "url": scene.as_uri()}
    with serve() as server:
        server.default = Reply(text=REPLY)
        # a long path-looking string may also be base64 (a JPEG's starts "/9j/"): decoded, it is not an image,
        # or (by the temp folder's length) it does not decode at all; refused either way
        refused = r"outside the allowed folders|not an image rcmu can read|looks like base64 but does not decode"
        for hostile in (scene.as_uri(), "/etc/passwd", "file:///proc/self/environ", str(home / "chroma")):
            with pytest.raises(InvalidInputError, match=refused):
                server_graph(home, server.url).invoke({"messages": [ask("Who?", {"type": "image", "url": hostile})]})
        settings = Settings(
            home=home,
            user="alice",
            backend="openai",
            base_url=server.url,
            model="m",
            allowed_roots=[faces_dir],
            **NO_MODEL,
        )
        allowed = build_graph(Parts(settings)).invoke({"messages": [ask("Who is on the left?", block)]})["answer"]
        assert allowed["photo"] == photo_id(scene.read_bytes()) and allowed["citations"][0]["name"] == "Barack Obama"
        settings = Settings(home=home, backend="openai", base_url=server.url, model="m", **NO_MODEL)
        local = build_graph(Parts(settings), local_caller=True)
        answer = local.invoke({"messages": [ask("Who?", block)]}, context=Context(user="alice"))["answer"]
        assert answer["photo"] == photo_id(scene.read_bytes())


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "no message to answer"),
        ([AIMessage(content="hi")], "not the user's"),
        ([HumanMessage(content=[{"type": "audio", "base64": "AAAA"}])], "'audio' is not understood"),
        ([HumanMessage(content=[{"type": "image", "url": "https://example.com/a.jpg"}])], "never download"),
        ([HumanMessage(content="   ")], "question"),
    ],
)
def test_bad_turns_get_a_message_the_caller_can_act_on(home: Path, messages: list, error: str) -> None:
    graph = build_graph(Parts(Settings(home=home, **NO_MODEL)))
    with pytest.raises(InvalidInputError, match=error):
        graph.invoke({"messages": messages, "context_only": True})


def test_two_images_in_one_turn_are_refused(home: Path, scene_block: dict) -> None:
    graph = build_graph(Parts(Settings(home=home, **NO_MODEL)))
    with pytest.raises(InvalidInputError, match="holds 2 images"):
        two = HumanMessage(content=[{"type": "text", "text": "Who?"}, scene_block, scene_block])
        graph.invoke({"messages": [two], "context_only": True})


def test_checkpoints_hold_no_class_of_ours(home: Path, scene_block: dict, caplog: pytest.LogCaptureFixture) -> None:
    """A permissive serializer (LangGraph Server's default) warns on every unregistered class it revives."""
    with serve() as server:
        server.default = Reply(text=REPLY)
        settings = Settings(home=home, user="alice", backend="openai", base_url=server.url, model="m", **NO_MODEL)
        graph = build_graph(Parts(settings), checkpointer=InMemorySaver(serde=JsonPlusSerializer()))
        config = {"configurable": {"thread_id": "serde"}}
        with caplog.at_level(logging.WARNING):
            graph.invoke({"messages": [ask("Who is on the left?", scene_block)]}, config)
            graph.invoke({"messages": [ask("And on the right?")]}, config)
            graph.get_state(config)
        assert not [r for r in caplog.records if "unregistered" in r.getMessage()]


def test_assistant_streams_tokens_and_keeps_its_signature(home: Path, faces_dir: Path) -> None:
    with serve() as server:
        server.default = Reply(text=REPLY)
        settings = Settings(home=home, user="alice", backend="openai", base_url=server.url, model="m", **NO_MODEL)
        tokens: list[str] = []
        answer = Assistant(settings).ask(
            "Who is on the left?", faces_dir / "scenes" / "two_people.jpg", on_token=tokens.append
        )
        assert len(tokens) > 3 and "".join(tokens).strip() == answer.text == REPLY
        assert answer.citations[0].name == "Barack Obama"


def _rcmu_env(home: Path, url: str) -> dict[str, str]:
    """What an `rcmu` command needs to answer as alice from the loopback server, faces only."""
    return {
        "RCMU_HOME": str(home),
        "RCMU_USER": "alice",
        "RCMU_BACKEND": "openai",
        "RCMU_BASE_URL": url,
        "RCMU_MODEL": "m",
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
    }


def test_rcmu_ask_prints_the_streamed_answer_once(home: Path, faces_dir: Path) -> None:
    from typer.testing import CliRunner

    from rcmu_agent.cli import app

    with serve() as server:
        server.default = Reply(text=REPLY, token_delay=0.01)
        env = _rcmu_env(home, server.url)
        scene = str(faces_dir / "scenes" / "two_people.jpg")
        result = CliRunner().invoke(app, ["ask", scene, "Who is on the left?"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.stdout.count(REPLY) == 1 and result.stdout.startswith(REPLY + "\n")
        assert server.requests[-1].body["stream"] is True
        as_json = CliRunner().invoke(app, ["ask", scene, "Who?", "--json"], env=env, catch_exceptions=False)
        assert json.loads(as_json.stdout)["answer"] == REPLY  # one object at the end, no tokens before it


def test_a_second_image_in_the_thread_starts_a_new_photo_context(
    home: Path, scene_block: dict, faces_dir: Path
) -> None:
    with serve() as server:
        server.default = Reply(text="It is [1].")
        graph = server_graph(home, server.url, threads=True)
        config = {"configurable": {"thread_id": "two-photos"}}
        first = graph.invoke({"messages": [ask("Who is on the left?", scene_block)]}, config)["answer"]
        assert {r["name"] for r in first["regions"]} == {"Barack Obama", "Joe Biden"}
        biden = base64.b64encode((faces_dir / "reference" / "biden_biden.jpg").read_bytes()).decode()
        block = {"type": "image", "base64": biden, "mime_type": "image/jpeg"}
        second = graph.invoke({"messages": [ask("Who is this?", block)]}, config)["answer"]
        assert second["photo"] != first["photo"]  # the new photo, not the thread's first one
        assert [r["name"] for r in second["regions"]] == ["Joe Biden"]  # nothing left over from the first photo
        assert second["citations"][0]["name"] == "Joe Biden"
        follow = graph.invoke({"messages": [ask("What does he like?")]}, config)["answer"]
        assert follow["photo"] == second["photo"] and [r["name"] for r in follow["regions"]] == ["Joe Biden"]
        sent = [r.body["messages"][0]["content"][0]["image_url"]["url"] for r in server.requests]
        assert sent[0] != sent[1] == sent[2]  # the model saw the second photo for the second turn and after


def test_a_follow_up_to_a_library_question_still_cites_photos(home: Path, faces_dir: Path, tmp_path: Path) -> None:
    """route → compose → cite_library: the follow-up is about the same retrieved photos."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "two_people.jpg").write_bytes((faces_dir / "scenes" / "two_people.jpg").read_bytes())
    Assistant(Settings(home=home, user="alice", **NO_MODEL)).index_library(library)
    with serve() as server:
        server.default = Reply(text="Barack Obama [1] was with Joe Biden [2].")
        graph = server_graph(home, server.url, threads=True)
        config = {"configurable": {"thread_id": "library"}}
        first = graph.invoke({"messages": [ask("Who was with Joe Biden?")], "library": True}, config)["answer"]
        cited = {(Path(c["path"]).name, c["name"]) for c in first["photo_citations"]}
        assert ("two_people.jpg", "Barack Obama") in cited
        steps = [
            step
            for update in graph.stream({"messages": [ask("And who is on the right?")]}, config, stream_mode="updates")
            for step in update
        ]
        assert steps == ["route", "compose", "answer", "cite_library"]
        follow = graph.get_state(config).values["answer"]
        assert {(Path(c["path"]).name, c["name"]) for c in follow["photo_citations"]} == cited
        assert [Path(p["path"]).name for p in follow["photos"]] == ["two_people.jpg"]
        assert follow["photo"] == first["photo"]  # the same collage went to the model again
        # a photo of its own (or a memory question) leaves the library: plain citations again
        biden = base64.b64encode((faces_dir / "reference" / "biden_biden.jpg").read_bytes()).decode()
        photo = graph.invoke({"messages": [ask("Who?", {"type": "image", "base64": biden})]}, config)["answer"]
        assert "photo_citations" not in photo and photo["citations"][0]["name"] == "Joe Biden"


def test_rcmu_ask_prints_tokens_as_they_arrive(home: Path, faces_dir: Path) -> None:
    """A real `rcmu ask` process against a server that decodes slowly: the first words are on stdout
    well before the last, and well before the process ends."""
    import subprocess
    import sys
    import time

    with serve() as server:
        server.default = Reply(text=REPLY, token_delay=0.15)
        env = {
            **_rcmu_env(home, server.url),
            "PATH": os.environ["PATH"],
            "HOME": str(home.parent),
            "HF_HUB_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
        }
        rcmu = str(Path(sys.executable).with_name("rcmu"))
        scene = str(faces_dir / "scenes" / "two_people.jpg")
        proc = subprocess.Popen([rcmu, "ask", scene, "Who is on the left?"], env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        arrivals: list[tuple[float, bytes]] = []
        while piece := os.read(proc.stdout.fileno(), 4096):
            arrivals.append((time.monotonic(), piece))
        ended = time.monotonic()
        assert proc.wait(timeout=30) == 0
    assert b"".join(p for _, p in arrivals).decode().startswith(REPLY + "\n")
    first = arrivals[0]
    assert first[1].decode().strip() and REPLY.startswith(first[1].decode())  # a head of the answer, not all
    assert len(arrivals) > 3  # many writes, not one at the end
    assert ended - first[0] > 1.0  # 13 chunks 0.15 s apart: the first came ~1.8 s before the end
