"""examples/host_agent.py run as written: `create_agent` with a scripted host chat model that emits the
tool calls, the real tools, real memory and dlib, and the loopback model server behind the assistant."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from rcmu_agent.testing import FakeServer

pytestmark = pytest.mark.integration  # a host agent over a loopback server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "host_agent.py"


class ScriptedHost(GenericFakeChatModel):
    """A host chat model that replays a script and records what it was shown and which tools it got."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[str] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedHost:
        self.bound = [t.name for t in tools]
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


@pytest.fixture()
def example(tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for key, value in {
        "RCMU_HOME": str(tmp_path / "home"),
        "RCMU_BACKEND": "openai",
        "RCMU_BASE_URL": server.url,
        "RCMU_MODEL": "rc-qwen2-vl",
        "RCMU_API_KEY": "sk-test",
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
    }.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("host_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_call(name: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call-{name}", "type": "tool_call"}])


def test_host_agent_asks_who_is_in_the_photo(
    example: ModuleType, capsys: pytest.CaptureFixture[str], received: Callable[[], list[str]]
) -> None:
    photo = str(EXAMPLE.parent / "photos" / "two_people.jpg")
    host = ScriptedHost(
        messages=iter(
            [
                tool_call("ask_about_photo", photo=photo, question="Who is in this photo?"),
                AIMessage(content="That is Barack Obama [1] on the left and Joe Biden [2] on the right."),
            ]
        )
    )
    assert example.main(["--teach", "--user", "alice", f"Who is in {photo}?"], model=host) == 0
    tools = ["ask_about_photo", "describe_photo", "remember", "forget", "list_people", "recall", "search_photos"]
    assert host.bound == tools
    # the host model's second turn was shown the tool's result, with the structured answer attached
    result = next(m for m in host.seen[1] if isinstance(m, ToolMessage))
    assert result.name == "ask_about_photo" and result.status == "success"
    assert [c["name"] for c in result.artifact["citations"]] == ["Barack Obama", "Joe Biden"]
    assert "[1] = Barack Obama (person)" in str(result.content) and "[2] = Joe Biden (person)" in str(result.content)
    (sent,) = received()
    assert "plays basketball on weekends.\n[2]: The information of the person located at" in sent
    assert sent.endswith("Who is in this photo?")
    out = capsys.readouterr().out
    assert "remembered Barack Obama from obama.jpg" in out
    assert "-> ask_about_photo(photo=" in out and "<- ask_about_photo [success]" in out
    assert out.rstrip().endswith("That is Barack Obama [1] on the left and Joe Biden [2] on the right.")


def test_host_agent_recovers_from_a_tool_error(
    example: ModuleType, capsys: pytest.CaptureFixture[str], received: Callable[[], list[str]]
) -> None:
    """A refused call comes back as a message the host model reads, then it calls again correctly."""
    host = ScriptedHost(
        messages=iter(
            [
                tool_call("ask_about_photo", photo="https://example.com/two.jpg", question="Who is this?"),
                tool_call("recall", question="What does Joe Biden love?"),
                AIMessage(content="Joe Biden loves chocolate chip ice cream [1]."),
            ]
        )
    )
    assert example.main(["--teach", "What does Joe Biden love?"], model=host) == 0
    error = next(m for m in host.seen[1] if isinstance(m, ToolMessage))
    assert error.status == "error" and "remote URL; the tools never download — download it yourself" in str(
        error.content
    )
    recalled = [m for m in host.seen[2] if isinstance(m, ToolMessage)][-1]
    assert recalled.name == "recall" and recalled.artifact["citations"][0]["name"] == "Joe Biden"
    (sent,) = received()  # only the recall reached the model
    assert sent.startswith("[1]: The information of the person Joe Biden: Joe Biden, 46th president")
    assert capsys.readouterr().out.rstrip().endswith("Joe Biden loves chocolate chip ice cream [1].")
