"""The tools end to end: what the model behind them receives, what a host agent gets back, the user
scope, errors as tool messages, and sync/async parity. Real memory, real dlib, real HTTP."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from rcmu_agent import Assistant
from rcmu_agent.testing import FakeServer
from rcmu_agent.tools import RcmuToolkit, rcmu_tools
from rcmu_agent.vault import photo_id

pytestmark = pytest.mark.integration  # dlib, MiniLM, Chroma, a loopback server

# two_people.jpg is 1126x661: Obama's face at (253,47,409,203), Biden's at (778,57,965,243)
OBAMA_LINE = "[1]: The information of the person located at <|box_start|>(224,71),(363,307)<|box_end|> in the image: "
BIDEN_LINE = "[2]: The information of the person located at <|box_start|>(690,86),(857,367)<|box_end|> in the image: "
INSTRUCTION = (
    "Answer the following question based on the information above and the given image, "
    "and provide citations for your response."
)
MEMORY_INSTRUCTION = (
    "Answer the following question based on the information above, and provide citations for your response."
)


def tools_for(assistant: Assistant, user: str) -> dict[str, Any]:
    return {t.name: t for t in rcmu_tools(assistant, user=user)}


def call(tool: Any, **args: Any) -> ToolMessage:
    message = tool.invoke({"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    return message


async def acall(tool: Any, **args: Any) -> ToolMessage:
    message = await tool.ainvoke({"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    return message


def test_toolkit_gives_seven_tools_sharing_one_assistant(assistant: Assistant) -> None:
    tools = RcmuToolkit(assistant=assistant, user="alice").get_tools()
    names = ["ask_about_photo", "describe_photo", "remember", "forget", "list_people", "recall", "search_photos"]
    assert [t.name for t in tools] == names
    assert all(t.assistant is assistant and t.user == "alice" for t in tools)
    for tool in tools:
        schema = tool.tool_call_schema.model_json_schema()
        assert "user" not in schema["properties"] and "assistant" not in schema["properties"]
        assert tool.description and all(p.get("description") for p in schema["properties"].values())


def test_ask_about_photo_sends_the_spec_prompt_and_cites_both_people(
    assistant: Assistant, scene: Path, info: dict[str, str], received: Callable[[], list[str]]
) -> None:
    message = call(tools_for(assistant, "alice")["ask_about_photo"], photo=str(scene), question="Who is in this photo?")
    assert received() == [
        f"{OBAMA_LINE}{info['Barack Obama']}.\n{BIDEN_LINE}{info['Joe Biden']}.\n{INSTRUCTION}\nWho is in this photo?"
    ]
    assert message.status == "success"
    artifact = message.artifact
    assert [c["name"] for c in artifact["citations"]] == ["Barack Obama", "Joe Biden"]
    assert {r["index"]: r["name"] for r in artifact["regions"]} == {1: "Barack Obama", 2: "Joe Biden"}
    assert artifact["photo"] == photo_id(scene.read_bytes()) and artifact["invalid_citations"] == []
    lines = str(message.content).split("\n")
    assert lines[0] == (
        "Barack Obama was the 44th president of the United States and loves basketball [1]. "
        "Joe Biden was the 46th president and enjoys ice cream [2]."
    )
    assert lines[1:] == [
        "[1] = Barack Obama (person) at (253,47,409,203)",
        "[2] = Joe Biden (person) at (778,57,965,243)",
    ]


async def test_sync_and_async_give_the_same_message(assistant: Assistant, scene: Path) -> None:
    tools = tools_for(assistant, "alice")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("ask_about_photo", {"photo": str(scene), "question": "What does the man on the right enjoy?"}),
        ("describe_photo", {"photo": str(scene)}),
        ("recall", {"question": "When did we adopt Bella?"}),
        ("remember", {"name": "Joe Biden", "photos": [str(scene.parents[1] / "reference" / "biden_biden2.jpg")]}),
        ("ask_about_photo", {"photo": "https://example.com/a.jpg", "question": "Who?"}),  # an error, both ways
    ]
    for name, args in cases:
        sync, asynchronous = call(tools[name], **args), await acall(tools[name], **args)
        if name == "remember":  # the second call adds the same photo again: nothing new
            assert sync.artifact["photos_added"] == 1 and asynchronous.artifact["photos_added"] == 0
            assert sync.artifact["entity"]["id"] == asynchronous.artifact["entity"]["id"]
            continue

        def timeless(artifact: Any) -> Any:  # each run measures its own stage times
            return {k: v for k, v in artifact.items() if k != "timings"} if isinstance(artifact, dict) else artifact

        assert (sync.content, timeless(sync.artifact), sync.status) == (
            asynchronous.content,
            timeless(asynchronous.artifact),
            asynchronous.status,
        )


def test_describe_photo_asks_the_rcid_question(
    assistant: Assistant, scene: Path, info: dict[str, str], received: Callable[[], list[str]]
) -> None:
    message = call(tools_for(assistant, "alice")["describe_photo"], photo=str(scene))
    (text,) = received()
    assert (
        text
        == f"{OBAMA_LINE}{info['Barack Obama']}.\n{BIDEN_LINE}{info['Joe Biden']}.\n{INSTRUCTION}\nDescribe the image."
    )
    assert [c["name"] for c in message.artifact["citations"]] == ["Barack Obama", "Joe Biden"]


def test_recall_answers_from_memory_with_citations_to_entries(
    assistant: Assistant, info: dict[str, str], received: Callable[[], list[str]]
) -> None:
    message = call(tools_for(assistant, "alice")["recall"], question="When did we adopt Bella?")
    (text,) = received()
    lines = text.split("\n")
    assert lines[0] == f"[1]: The information of the dog Bella: {info['Bella']}."
    assert lines[-2:] == [MEMORY_INSTRUCTION, "When did we adopt Bella?"]
    assert "Kit Harington" not in text  # bob's memory never reaches alice's context
    bella = next(e for e in assistant.entities(user="alice") if e.name == "Bella")
    (citation, *_) = message.artifact["citations"]
    assert citation == {"index": 1, "entity_id": bella.id, "name": "Bella", "box": None, "valid": True}
    assert message.artifact["regions"][0]["source"] == "memory"
    assert f"[1] = Bella (dog), memory entry {bella.id}" in str(message.content).split("\n")
    assert "2019-06-02" in str(message.content)


def test_user_scope_is_fixed_by_the_toolkit(
    assistant: Assistant, scene: Path, info: dict[str, str], received: Callable[[], list[str]]
) -> None:
    bob = tools_for(assistant, "bob")
    seen = call(bob["ask_about_photo"], photo=str(scene), question="Who is in this photo?")
    assert [r["name"] for r in seen.artifact["regions"]] == [None, None]  # alice's people are strangers to bob
    assert seen.artifact["citations"] == []
    assert "[1] = an unrecognised person at (253,47,409,203)" in str(seen.content)
    recalled = call(bob["recall"], question="What does Barack Obama love? When did we adopt Bella?")
    assert all(c["name"] != "Bella" and c["name"] != "Barack Obama" for c in recalled.artifact["citations"])
    texts = received()
    assert not any(info["Barack Obama"] in t or info["Bella"] in t for t in texts)
    # a model that tries to pick the user is refused, and nothing runs
    forged = call(bob["recall"], question="When did we adopt Bella?", user="alice")
    assert forged.status == "error" and "user: Extra inputs are not permitted" in str(forged.content)
    assert len(received()) == len(texts)


def test_remember_adds_then_updates_and_the_tools_then_recognise(
    assistant: Assistant, faces_dir: Path, scene: Path, received: Callable[[], list[str]]
) -> None:
    tools = tools_for(assistant, "erin")
    reference = (faces_dir / "reference" / "obama_obama.jpg").read_bytes()
    block = {"type": "image", "base64": base64.b64encode(reference).decode(), "mime_type": "image/jpeg"}
    added = call(tools["remember"], name="Barack Obama", info="Erin's chess partner", photos=[block])
    assert added.status == "success" and added.artifact["created"] and added.artifact["photos_added"] == 1
    entity = added.artifact["entity"]
    assert (entity["category"], entity["info"], entity["photos"]) == ("person", "Erin's chess partner", 1)
    more = call(tools["remember"], name="barack obama", photos=[str(faces_dir / "reference" / "obama_obama2.jpg")])
    assert not more.artifact["created"] and more.artifact["entity"]["id"] == entity["id"]
    assert more.artifact["entity"]["info"] == "Erin's chess partner" and more.artifact["entity"]["photos"] == 2
    assert str(assistant.settings.home) not in str(more.artifact)  # the stored copies' paths stay private
    assert str(more.content).startswith(f"updated Barack Obama (person, id {entity['id']}) with 2 reference photo(s)")
    seen = call(tools["ask_about_photo"], photo=str(scene), question="Who is on the left?")
    assert sorted(str(r["name"]) for r in seen.artifact["regions"]) == ["Barack Obama", "None"]
    assert received()[-1].startswith(
        "[1]: The information of the person located at <|box_start|>(224,71),(363,307)<|box_end|> in the image: "
        "Erin's chess partner.\n"
    )


def test_caller_regions_skip_detection_and_resolve_placeholders(
    assistant: Assistant, shared_data: Path, received: Callable[[], list[str]]
) -> None:
    regions = [{"box": [80, 20, 420, 290], "category": "cat", "info": "Chelsea is a 6-year-old tabby who naps all day"}]
    message = call(
        tools_for(assistant, "alice")["ask_about_photo"],
        photo=str(shared_data / "objects" / "chelsea.png"),
        question="How old is <region1>?",
        regions=regions,
    )
    (text,) = received()
    assert text.split("\n")[0].startswith("[1]: The information of the cat located at <|box_start|>(177,66),(931,966)")
    assert text.endswith("How old is the cat located at <|box_start|>(177,66),(931,966)<|box_end|>?")
    assert "[1] = a cat described by the caller at (80,20,420,290)" in str(message.content)


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        (
            "ask_about_photo",
            {"photo": "/no/such/photo.jpg", "question": "Who?"},
            "photo '/no/such/photo.jpg' is outside the allowed folders — send the photo as base64",
        ),
        (
            "ask_about_photo",
            {"photo": "https://example.com/p.jpg", "question": "Who?"},
            "is a remote URL; the tools never download — download it yourself",
        ),
        (
            "describe_photo",
            {"photo": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"},
            "is corrupt or truncated",
        ),
        (
            "describe_photo",
            {"photo": "data:image/png;base64,SGVsbG8sIHRoaXMgaXMgbm90IGFuIGltYWdlIGF0IGFsbA=="},
            "the sent image is not an image rcmu can read — give a JPEG, PNG, WebP, HEIC or AVIF file",
        ),
        (
            "describe_photo",
            {"photo": "data:image/png;base64,%%%notbase64%%%"},
            "photo looks like base64 but does not decode",
        ),
        ("ask_about_photo", {"photo": "SCENE", "question": "   "}, "question is empty — give a non-empty question"),
        ("recall", {"question": ""}, "question is empty — give a non-empty question"),
        (
            "remember",
            {"name": "Nobody Known", "photos": []},
            "nobody named 'Nobody Known' is in memory yet — give `info`",
        ),
        ("remember", {"name": "Bella"}, "nothing to update for 'Bella' — give new `info`, new `photos`, or both"),
        (
            "remember",
            {"name": "Bella", "info": "x", "category": "cat"},
            "'Bella' is already remembered as a dog — leave `category` out",
        ),
        (
            "remember",
            {"name": "Rex", "info": "A dog", "photos": ["SCENE_DIR"]},
            "is not a readable photo — give the path of one image file",
        ),
        (
            "ask_about_photo",
            {"photo": "SCENE", "question": "Who?", "regions": [{"box": [50, 50, 10, 10]}]},
            "regions.0: box (50,50,10,10) is empty or inverted",
        ),
        (
            "ask_about_photo",
            {"photo": "SCENE", "question": "Who?", "regions": [{"box": [0, 0, 5000, 10], "info": "x"}]},
            "outside the 1126x661 image",
        ),
        (
            "ask_about_photo",
            {"photo": "SCENE"},
            "question: Field required — call the tool again with arguments that match its schema",
        ),
    ],
)
def test_bad_input_becomes_an_error_message_the_model_can_act_on(
    assistant: Assistant, scene: Path, server: FakeServer, tool: str, args: dict[str, Any], expected: str
) -> None:
    args = {k: str(scene) if v == "SCENE" else v for k, v in args.items()}
    args["photos"] = [str(scene.parent) if p == "SCENE_DIR" else p for p in args.get("photos", [])] or args.get(
        "photos"
    )
    args = {k: v for k, v in args.items() if v is not None}
    before = len(server.requests)
    message = call(tools_for(assistant, "alice")[tool], **args)
    assert message.status == "error" and message.artifact is None
    assert str(message.content).startswith("error: ") and " — " in str(message.content)
    assert expected in str(message.content)
    assert len(server.requests) == before  # refused before any model call


def test_list_people_and_forget_stay_in_the_users_scope(assistant: Assistant, faces_dir: Path) -> None:
    tools = tools_for(assistant, "grace")
    assert call(tools["list_people"]).artifact == {"people": []}  # grace is new: an empty memory
    photo = str(faces_dir / "reference" / "obama_obama.jpg")
    call(tools["remember"], name="Barack Obama", info="Grace's coach", photos=[photo])
    listed = call(tools["list_people"]).artifact["people"]
    assert [(p["name"], p["photos"]) for p in listed] == [("Barack Obama", 1)]
    assert "photos/" not in str(listed)  # stored file paths never leave the memory
    assert "Grace's coach" not in str(call(tools_for(assistant, "alice")["list_people"]).artifact)
    gone = call(tools["forget"], name="barack obama")
    assert gone.artifact["entity"]["name"] == "Barack Obama"
    again = call(tools["forget"], name="Barack Obama")
    assert again.status == "error" and str(again.content).startswith("error: ")
    assert call(tools["list_people"]).artifact == {"people": []}
