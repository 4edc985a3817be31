"""Teaching in the conversation behind a real `langgraph dev` (issue 23's proof), driven by `langgraph-sdk`
as a chat front end would: the interrupt a client renders, `Command(resume=...)`, and the hostile cases.

One server process for the module (bearer-token auth, the OpenAI-compatible backend answered by the
loopback server), an empty memory to start with; the tests run in file order and build on each other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import Reply, serve
from tests._langgraph_dev import NO_MODEL, RunFailed, human, image_block, run_turn, start_langgraph_dev

pytestmark = pytest.mark.integration  # LangGraph Server as a subprocess

LEFT, RIGHT = [253, 47, 409, 203], [778, 57, 965, 243]  # the two faces of two_people.jpg
REPLY = "The person [1] is on the left."


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty-home")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[str]:
    with serve() as fake:
        fake.default = Reply(text=REPLY)
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": fake.url, "RCMU_MODEL": "m"}
        yield from start_langgraph_dev(tmp_path_factory.mktemp("teach-server"), home, env)


def _memory(home: Path, user: str) -> dict[str, int]:
    """Who `user`'s memory holds, with how many reference photos (read as another process would)."""
    return {e.name: len(e.photos) for e in Assistant(Settings(home=home, user=user, **NO_MODEL)).entities()}


def _turn(url: str, token: str, thread: str | None, text: str, image: dict[str, Any] | None = None) -> dict[str, Any]:
    return asyncio.run(run_turn(url, token, thread, {"messages": [human(text, image)]}))[1]


def _resume(url: str, token: str, thread: str, value: Any) -> dict[str, Any]:
    return asyncio.run(run_turn(url, token, thread, None, command={"resume": value}))[1]


def _interrupts(url: str, token: str, thread: str) -> list[Any]:
    async def state() -> Any:
        from langgraph_sdk import get_client

        client = get_client(url=url, headers={"Authorization": f"Bearer {token}"})
        return await client.threads.get_state(thread)

    found = asyncio.run(state())
    return [i["value"] for i in found["interrupts"]]  # what the README shows a client reading


def _rcmu(values: dict[str, Any]) -> dict[str, Any]:
    return dict(values["messages"][-1]["additional_kwargs"]["rcmu"])


@pytest.fixture(scope="module")
def scene(faces_dir: Path) -> dict[str, Any]:
    return image_block(faces_dir / "scenes" / "two_people.jpg")


def test_teach_region_one_then_he_is_recognised(
    server: str, home: Path, scene: dict[str, Any], faces_dir: Path
) -> None:
    asked = _turn(server, "token-alice", None, "Who is here?", scene)
    thread = asked["thread_id"]
    regions = _rcmu(asked)["regions"]
    assert sorted((r["index"], [round(v) for v in r["box"]], r["name"]) for r in regions) == [
        (1, LEFT, None), (2, RIGHT, None),
    ]  # fmt: skip
    assert _rcmu(asked)["unrecognised"] == [1, 2]

    _turn(server, "token-alice", thread, "[1] is Barack Obama, the 44th president")
    (payload,) = _interrupts(server, "token-alice", thread)
    proposal = payload["proposal"]
    assert (proposal["action"], proposal["name"], proposal["region"]) == ("remember", "Barack Obama", 1)
    assert [round(v) for v in proposal["box"]] == LEFT and proposal["info"] == "Barack Obama, the 44th president"
    assert proposal["reference"].startswith("photo:") and proposal["thumbnail"].startswith("data:image/jpeg;base64,")
    assert payload["question"].startswith("Remember Barack Obama (person) from region [1] at (253,47,409,203)?")
    assert payload["action_requests"][0]["args"]["name"] == "Barack Obama"  # what Agent Chat UI renders
    assert str(home) not in json.dumps(payload)
    assert _memory(home, "alice") == {}  # nothing before the yes

    done = _resume(server, "token-alice", thread, "yes")
    assert done["messages"][-1]["content"].startswith("Remembered Barack Obama (person) from region [1]")
    drawn = [m for m in done["ui"] if m["metadata"]["message_id"] == done["messages"][-1]["id"]]
    assert [(r["index"], r["name"]) for r in drawn[0]["props"]["regions"]] == [(1, "Barack Obama"), (2, None)]
    assert _memory(home, "alice") == {"Barack Obama": 1}

    follow = _turn(server, "token-alice", thread, "Who is on the left?")
    cited = _rcmu(follow)["citations"][0]
    assert cited["index"] == 1 and cited["name"] == "Barack Obama" and [round(v) for v in cited["box"]] == LEFT

    later = _turn(server, "token-alice", None, "Who is this?", image_block(faces_dir / "scenes" / "obama1.jpg"))
    assert [r["name"] for r in _rcmu(later)["regions"]] == ["Barack Obama"]


def test_by_position_and_a_no_changes_nothing(server: str, home: Path, scene: dict[str, Any]) -> None:
    thread = _turn(server, "token-alice", None, "Who is here?", scene)["thread_id"]
    _turn(server, "token-alice", thread, "the one on the right is Joe Biden")
    (payload,) = _interrupts(server, "token-alice", thread)
    assert payload["proposal"]["region"] == 2 and [round(v) for v in payload["proposal"]["box"]] == RIGHT
    declined = _resume(server, "token-alice", thread, "no")
    assert declined["messages"][-1]["content"].startswith("Nothing changed")
    assert _memory(home, "alice") == {"Barack Obama": 1}

    _turn(server, "token-alice", thread, "the one on the right is Joe Biden")
    assert _memory(home, "alice") == {"Barack Obama": 1}  # proposed, not confirmed
    _turn(server, "token-alice", thread, "Who is on the right?")  # a new turn instead of the resume
    assert _interrupts(server, "token-alice", thread) == [] and _memory(home, "alice") == {"Barack Obama": 1}

    _turn(server, "token-alice", thread, "the one on the right is Joe Biden")  # Agent Chat UI's approve, as sent
    done = _resume(server, "token-alice", thread, {"decisions": [{"type": "approve"}]})
    assert "Remembered Joe Biden" in done["messages"][-1]["content"]
    assert _memory(home, "alice") == {"Barack Obama": 1, "Joe Biden": 1}


def test_wrong_regions_fail_clearly(server: str, home: Path, scene: dict[str, Any]) -> None:
    thread = _turn(server, "token-alice", None, "Who is here?", scene)["thread_id"]
    with pytest.raises(RunFailed, match=r"there is no region \[9\]: the photo's regions are \[1\], \[2\]"):
        _turn(server, "token-alice", thread, "[9] is Kit Harington")
    sky = {"messages": [human("What is here?", scene)], "regions": [{"box": [0, 300, 200, 460], "category": "person"}]}
    boxed = asyncio.run(run_turn(server, "token-alice", None, sky))[1]
    assert _rcmu(boxed)["unrecognised"] == [1]
    with pytest.raises(RunFailed, match=r"no face in region \[1\], so it cannot be remembered as a person"):
        _turn(server, "token-alice", boxed["thread_id"], "[1] is Kit Harington")
    assert _memory(home, "alice") == {"Barack Obama": 1, "Joe Biden": 1}


def test_bob_cannot_teach_into_alices_memory(server: str, home: Path, scene: dict[str, Any]) -> None:
    alices = _turn(server, "token-alice", None, "Who is here?", scene)["thread_id"]
    _turn(server, "token-alice", alices, "the one on the left is Barack Obama")  # pending in alice's thread
    with pytest.raises(Exception, match=r"404|403|not found|Not Found"):
        _resume(server, "token-bob", alices, "yes")
    with pytest.raises(Exception, match=r"404|403|not found|Not Found"):
        _turn(server, "token-bob", alices, "[2] is Mallory")
    with pytest.raises(RunFailed, match="authentication"):
        asyncio.run(
            run_turn(server, "token-bob", None, {"messages": [human("forget Barack Obama")]}, {"user": "alice"})
        )

    # in his own thread, bob rewrites the proposal to point at alice's crop and entity: still his memory only
    bobs = _turn(server, "token-bob", None, "Who is here?", scene)
    assert all(r["name"] is None for r in _rcmu(bobs)["regions"])  # alice's people are not his
    _turn(server, "token-bob", bobs["thread_id"], "[2] is Mallory")  # his crop of the right face
    (theirs,) = _interrupts(server, "token-alice", alices)  # hers of the left one
    forged = {**theirs["proposal"], "name": "Barack Obama"}

    async def rewrite() -> None:
        from langgraph_sdk import get_client

        client = get_client(url=server, headers={"Authorization": "Bearer token-bob"})
        await client.threads.update_state(bobs["thread_id"], {"change": forged}, as_node="propose")

    asyncio.run(rewrite())
    with pytest.raises(RunFailed, match=r"NotFoundError|no such photo"):  # alice's crop is not in bob's vault
        _resume(server, "token-bob", bobs["thread_id"], "yes")
    assert _memory(home, "bob") == {} and _memory(home, "alice") == {"Barack Obama": 1, "Joe Biden": 1}

    _turn(server, "token-bob", bobs["thread_id"], "[2] is Mallory, a stranger")
    _resume(server, "token-bob", bobs["thread_id"], "yes")
    assert _memory(home, "bob") == {"Mallory": 1}
    assert _memory(home, "alice") == {"Barack Obama": 1, "Joe Biden": 1}
    assert _interrupts(server, "token-alice", alices)  # alice's proposal still waits for her
