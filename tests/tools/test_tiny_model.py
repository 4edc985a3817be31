"""The tools with the in-process backend: a tiny Qwen2-VL saved to disk and loaded by the real code."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import build_tiny_qwen2vl
from rcmu_agent.tools import rcmu_tools

pytestmark = pytest.mark.integration  # a tiny VLM


@pytest.fixture(scope="module")
def tiny_assistant(home: Path, scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    model = build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "qwen")
    settings = Settings(
        home=home,
        model=str(model),
        max_new_tokens=8,
        object_detector=None,
        image_embedding_model=None,
        allowed_roots=[scene.parent],
    )
    return Assistant(settings)


async def test_ask_about_photo_with_a_local_model(tiny_assistant: Assistant, scene: Path, info: dict[str, str]) -> None:
    tool = next(t for t in rcmu_tools(tiny_assistant, user="alice") if t.name == "ask_about_photo")
    call = {
        "name": tool.name,
        "args": {"photo": str(scene), "question": "Who is on the left?"},
        "id": "t",
        "type": "tool_call",
    }
    message = tool.invoke(call)
    assert isinstance(message, ToolMessage) and message.status == "success"
    direct = tiny_assistant.ask("Who is on the left?", scene, user="alice")
    assert message.artifact["answer"] == direct.text and direct.text  # the tool adds nothing and loses nothing
    assert message.artifact["context"] == direct.prompt
    assert direct.prompt.startswith(
        "[1]: The information of the person located at <|box_start|>(224,71),(363,307)<|box_end|> in the image: "
        f"{info['Barack Obama']}.\n"
    )
    assert str(message.content).split("\n")[1:] == [
        "[1] = Barack Obama (person) at (253,47,409,203)",
        "[2] = Joe Biden (person) at (778,57,965,243)",
    ]
    asynchronous = await tool.ainvoke(call)
    timeless = {k: v for k, v in message.artifact.items() if k != "timings"}  # each run times its own stages
    assert asynchronous.content == message.content
    assert {k: v for k, v in asynchronous.artifact.items() if k != "timings"} == timeless
