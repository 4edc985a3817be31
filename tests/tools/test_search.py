"""`search_photos` over alice's indexed library (three scene photos and a cat): exact photo sets for
people and pairs, the user scope, refusals, and a library question answered with photo citations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from rcmu_agent import Assistant
from rcmu_agent.tools import SearchPhotosTool

pytestmark = pytest.mark.integration  # dlib, MiniLM, Chroma, a loopback server


def search(assistant: Assistant, user: str = "alice", **args: Any) -> ToolMessage:
    tool = SearchPhotosTool(assistant=assistant, user=user)
    message = tool.invoke({"name": tool.name, "args": args, "id": "call-s", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    return message


async def asearch(assistant: Assistant, **args: Any) -> ToolMessage:
    tool = SearchPhotosTool(assistant=assistant, user="alice")
    message = await tool.ainvoke({"name": tool.name, "args": args, "id": "call-s", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    return message


def test_people_together_find_exactly_their_photos(assistant: Assistant, library: Path) -> None:
    pair = search(assistant, people=["Barack Obama", "Joe Biden"])
    assert [Path(h["path"]).name for h in pair.artifact["photos"]] == ["two_people.jpg"]
    (hit,) = pair.artifact["photos"]
    assert [hit["regions"][i]["info"] for i in hit["matched_regions"]] == ["Barack Obama", "Joe Biden"]
    lines = str(pair.content).split("\n")
    assert lines[0] == "1 photo(s):"
    assert lines[1].startswith("1. two_people.jpg — people: Barack Obama, Joe Biden; matched: ")
    assert "Barack Obama at (253,47,409,203), Joe Biden at (778,57,965,243)" in lines[1]
    alone = search(assistant, people=["barack obama"], limit=10)
    assert sorted(Path(h["path"]).name for h in alone.artifact["photos"]) == ["obama1.jpg", "two_people.jpg"]


async def test_async_search_matches_sync(assistant: Assistant, library: Path) -> None:
    args: dict[str, Any] = {"people": ["Joe Biden"], "limit": 3}
    sync, asynchronous = search(assistant, **args), await asearch(assistant, **args)
    assert (sync.content, sync.artifact) == (asynchronous.content, asynchronous.artifact)
    assert [Path(h["path"]).name for h in sync.artifact["photos"]] == ["two_people.jpg"]


def test_the_library_is_per_user(assistant: Assistant, library: Path) -> None:
    message = search(assistant, user="bob", people=["Barack Obama"])
    assert message.status == "error" and "Barack Obama" in str(message.content) and " — " in str(message.content)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "search_photos needs something to search by — give people, text, since/until, or a question"),
        ({"people": ["Barack Obama"], "question": "Who?"}, "`question` cannot be combined with people, text or dates"),
        ({"since": "last summer"}, "since: Input should be a valid date"),
        ({"people": ["Barack Obama"], "limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"people": ["Nobody At All"]}, "Nobody At All"),
    ],
)
def test_bad_searches_are_messages(assistant: Assistant, library: Path, args: dict[str, Any], expected: str) -> None:
    message = search(assistant, **args)
    assert message.status == "error" and str(message.content).startswith("error: ")
    assert expected in str(message.content) and " — " in str(message.content)


def test_a_library_question_cites_photos_and_regions(
    assistant: Assistant, library: Path, info: dict[str, str], received: Callable[[], list[str]]
) -> None:
    message = search(assistant, question="Who was with Joe Biden?", limit=3)
    assert message.status == "success"
    (sent,) = received()
    assert info["Barack Obama"] in sent and info["Joe Biden"] in sent
    assert sent.endswith("\nWho was with Joe Biden?")
    artifact = message.artifact
    assert {Path(p["path"]).name for p in artifact["photos"]} >= {"two_people.jpg"}
    cited = {(Path(c["path"]).name, c["name"]) for c in artifact["photo_citations"]}
    assert {("two_people.jpg", "Barack Obama"), ("two_people.jpg", "Joe Biden")} <= cited
    legend = str(message.content).split("\n")[1:]
    assert "= Barack Obama (person) in two_people.jpg at (253,47,409,203)" in "\n".join(legend)
    assert str(library) not in str(message.content)  # the model reads file names, never the server's folders
