"""Teaching in the conversation (issue 23): every region numbered, the offline grammar, the proposal and
its confirmation, through the real graph (dlib on the shared photos, memory in Chroma, threads in SQLite)
with the answers from the loopback OpenAI-compatible server; the CLI's y/N and --yes; the chat-model
route with a scripted tool-calling server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rcmu_agent import Assistant, Settings
from rcmu_agent.citations import number_regions, resolve_citations
from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.schema import ContextEntry, Region
from rcmu_agent.teach import resolve_region
from rcmu_agent.teach_dialogue import read_decision
from rcmu_agent.teach_grammar import Intent, parse_turn
from rcmu_agent.testing import FakeServer, Recorded, Reply, serve

LEFT, RIGHT = (253.0, 47.0, 409.0, 203.0), (778.0, 57.0, 965.0, 243.0)  # the two faces of two_people.jpg


# ---- the grammar, the numbering, the decisions (pure) ---------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "intent"),
    [
        (
            "[2] is my sister Rose Leslie; she adopted Bella in 2022",
            Intent("remember", "Rose Leslie", "my sister; she adopted Bella in 2022", None, 2),
        ),
        ("[1] is Barack Obama, the 44th president", Intent("remember", "Barack Obama", "the 44th president", None, 1)),
        ("the one on the left is Rose", Intent("remember", "Rose", None, None, "left")),
        ("The person on the right is Joe Biden.", Intent("remember", "Joe Biden", None, None, "right")),
        ("this is Bella, my dog", Intent("remember", "Bella", "my dog", "dog", "only")),
        ("remember that #3 is Ana de Armas (an actor)", Intent("remember", "Ana de Armas", "an actor", None, 3)),
        ("Rose moved to Lisbon", Intent("update", "Rose", "Rose moved to Lisbon.")),
        ("forget Bella", Intent("forget", "Bella")),
        ("Forget about Joe Biden.", Intent("forget", "Joe Biden")),
        ("who do you know?", Intent("list")),
        ("Who is in your memory", Intent("list")),
    ],
)
def test_the_grammar_reads_the_documented_forms(text: str, intent: Intent) -> None:
    assert parse_turn(text) == intent


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    [
        "Who is on the left?",
        "What do you know about Rose?",
        "[1] is who?",
        "Is [1] Rose?",
        "[2] is my sister",  # no name
        "[1] is happy",
        "the one on the left is wearing a Hat",
        "The man on the left is wearing a suit",
        "Describe the image.",
        "And on the right?",
        "I think [1] looks tired",
    ],
)
def test_anything_else_stays_a_question(text: str) -> None:
    assert parse_turn(text) is None


def _entry(box: tuple[float, float, float, float], name: str | None = None) -> ContextEntry:
    region = Region(box=box, category="person", source="face")
    return ContextEntry(region=region, name=name, info=f"{name}, a friend" if name else None)


@pytest.mark.unit
def test_unknown_regions_are_numbered_after_the_known_and_cannot_be_cited() -> None:
    entries = number_regions([_entry((500, 0, 600, 100)), _entry((0, 0, 100, 100)), _entry((300, 0, 400, 100), "Rose")])
    assert [e.index for e in entries] == [3, 2, 1]  # Rose first (sent), then the unknown ones left to right
    assert number_regions(entries) == entries  # a follow-up numbers them the same way
    from rcmu_agent.annotate import label
    from rcmu_agent.tools._common import legend_line

    shown = sorted(entries, key=lambda e: e.index or 0)  # the same numbers in the image and the legend
    assert [label(e) for e in shown] == ["[1] Rose", "[2] unknown person", "[3] unknown person"]
    assert legend_line(shown[1]) == "[2] = an unrecognised person at (0,0,100,100)"
    citations, invalid = resolve_citations("Rose [1] stands beside [2].", entries)
    assert citations[0].name == "Rose" and invalid == [2]  # the model never saw [2]


@pytest.mark.unit
def test_a_region_is_found_by_number_position_or_as_the_only_one() -> None:
    two = number_regions([_entry(LEFT), _entry(RIGHT)])
    assert resolve_region(two, 2).box == RIGHT  # type: ignore[union-attr]
    assert resolve_region(two, "left").box == LEFT  # type: ignore[union-attr]
    assert resolve_region(two, "right").box == RIGHT  # type: ignore[union-attr]
    with pytest.raises(InvalidInputError, match=r"there is no region \[5\]: the photo's regions are \[1\], \[2\]"):
        resolve_region(two, 5)
    with pytest.raises(InvalidInputError, match=r"the photo shows 2 regions .* say which one by its number"):
        resolve_region(two, "only")
    stacked = number_regions([_entry((100, 0, 300, 100)), _entry((150, 200, 250, 300)), _entry((600, 0, 700, 100))])
    with pytest.raises(InvalidInputError, match=r"'the one on the left' could be \[1\] or \[2\]"):
        resolve_region(stacked, "left")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "decision"),
    [
        (True, True),
        ("yes", True),
        ("No.", False),
        ({"name": "Rose Leslie"}, {"name": "Rose Leslie"}),
        ({"decisions": [{"type": "approve"}]}, True),  # LangChain's human-in-the-loop
        ({"decisions": [{"type": "reject", "message": "not him"}]}, False),
        (
            {"decisions": [{"type": "edit", "edited_action": {"name": "remember", "args": {"info": "x"}}}]},
            {"info": "x"},
        ),
        ([{"type": "accept", "args": None}], True),  # Agent Inbox
        ([{"type": "ignore", "args": None}], False),
    ],
)
def test_a_resume_is_yes_no_or_an_edit(value: Any, decision: Any) -> None:
    assert read_decision(value) == decision


@pytest.mark.unit
def test_a_resume_that_is_none_of_them_is_refused() -> None:
    for value in ("maybe", {"user": "bob"}, 3, None):
        with pytest.raises(InvalidInputError, match="not understood"):
            read_decision(value)


# ---- through the graph --------------------------------------------------------------------------------------


@pytest.fixture()
def fake() -> Iterator[FakeServer]:
    with serve(FakeServer(default=Reply(text="The person [1] is on the left."))) as server:
        yield server


def _assistant(home: Path, fake: FakeServer, user: str = "alice", **more: Any) -> Assistant:
    base = {"object_detector": None, "image_embedding_model": None, "backend": "openai", "model": "m"}
    return Assistant(Settings(home=home, user=user, base_url=fake.url, **{**base, **more}))


@pytest.mark.integration
def test_teach_a_region_then_recognise_him(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    alice = _assistant(tmp_path, fake)
    scene = faces_dir / "scenes" / "two_people.jpg"
    first = alice.ask("Who is here?", scene, thread_id="t")
    assert sorted((e.index, e.box) for e in first.regions) == [(1, LEFT), (2, RIGHT)]  # unknown, numbered anyway
    assert first.unrecognised == [1, 2] and first.summary()["unrecognised"] == [1, 2]
    assert "[1]" not in first.prompt.split("Answer the following")[0]  # nothing unknown went to the model

    proposal = alice.ask("[1] is Barack Obama, the 44th president", thread_id="t")
    change = proposal.change
    assert change is not None and change.status == "proposed"
    assert (change.action, change.name, change.category, change.region, change.box) == (
        "remember", "Barack Obama", "person", 1, LEFT,
    )  # fmt: skip
    assert change.info == "Barack Obama, the 44th president"
    assert change.reference and change.reference.startswith("photo:")
    assert change.thumbnail and change.thumbnail.startswith("data:image/jpeg;base64,")
    assert str(tmp_path) not in json.dumps(proposal.summary())
    assert alice.entities() == []  # nothing before the yes

    done = alice.resume("t", "yes")
    assert done.change is not None and done.change.status == "done"
    assert "Remembered Barack Obama (person) from region [1]" in done.text
    (obama,) = alice.entities()
    assert obama.name == "Barack Obama" and len(obama.photos) == 1
    crop = alice.photo(change.reference)
    assert crop.size[0] >= 300  # the face with room around it, as the reference photo

    follow = alice.ask("Who is on the left?", thread_id="t")
    named = {e.index: e.name for e in follow.regions}
    assert named == {1: "Barack Obama", 2: None} and follow.citations[0].name == "Barack Obama"
    later = alice.ask("Who is this?", faces_dir / "scenes" / "obama1.jpg", thread_id="t2")
    assert [e.name for e in later.regions if e.name] == ["Barack Obama"]


@pytest.mark.integration
def test_by_position_a_no_and_a_new_turn_write_nothing(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    alice = _assistant(tmp_path, fake)
    alice.ask("Who is here?", faces_dir / "scenes" / "two_people.jpg", thread_id="t")
    proposal = alice.ask("the one on the right is Joe Biden", thread_id="t")
    assert proposal.change is not None and (proposal.change.region, proposal.change.box) == (2, RIGHT)
    declined = alice.resume("t", "no")
    assert declined.change is not None and declined.change.status == "declined"
    assert declined.text.startswith("Nothing changed") and alice.entities() == []

    alice.ask("the one on the right is Joe Biden", thread_id="t")
    asked = alice.ask("Who is on the left?", thread_id="t")  # a new turn instead of the resume
    assert asked.change is None and alice.entities() == []
    with pytest.raises(InvalidInputError, match="is not waiting for a yes or no"):
        alice.resume("t", "yes")
    assert alice.entities() == []

    edited = alice.ask("the one on the right is Joe Biden", thread_id="t")
    assert edited.change is not None
    again = alice.resume("t", {"name": "Joseph Biden", "region": 1})  # asked again, saying why
    assert again.change is not None and again.change.status == "proposed" and again.change.name == "Joe Biden"
    assert again.text.startswith("an edit of the proposal cannot change region — ")
    assert alice.resume("t", "maybe").text.startswith("the answer to the proposed memory change is not understood")
    assert alice.entities() == []
    edit = {"name": "Joseph Biden", "info": "Joseph Biden, the 46th president", "region": 2, "category": "person"}
    done = alice.resume("t", {"decisions": [{"type": "edit", "edited_action": {"name": "remember", "args": edit}}]})
    assert done.change is not None and done.change.name == "Joseph Biden"
    assert [(e.name, e.info) for e in alice.entities()] == [("Joseph Biden", "Joseph Biden, the 46th president")]


@pytest.mark.integration
def test_update_forget_and_list(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    alice = _assistant(tmp_path, fake)
    alice.remember("Rose Leslie", info="Rose, my sister", photos=[faces_dir / "reference" / "rose_leslie_img1.jpg"])
    listed = alice.ask("who do you know?", thread_id="t")
    assert listed.change is not None and listed.change.action == "list" and "Rose Leslie (person)" in listed.text

    update = alice.ask("Rose moved to Lisbon", thread_id="t")
    assert update.change is not None and update.change.info == "Rose, my sister. Rose moved to Lisbon."
    alice.resume("t", True)
    assert alice.entities()[0].info == "Rose, my sister. Rose moved to Lisbon."
    assert alice.ask("James moved to Lisbon", thread_id="t").change is None  # nobody known: a question

    forget = alice.ask("forget Rose Leslie", thread_id="t")
    assert forget.change is not None and forget.change.action == "forget" and alice.entities()
    alice.resume("t", "yes")
    assert alice.entities() == []
    with pytest.raises(InvalidInputError, match="nobody called 'Bella' is in memory"):
        alice.ask("forget Bella", thread_id="t")


@pytest.mark.integration
def test_wrong_regions_get_clear_errors(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    alice = _assistant(tmp_path, fake)
    scene = faces_dir / "scenes" / "two_people.jpg"
    alice.ask("Who is here?", scene, thread_id="t")
    with pytest.raises(InvalidInputError, match=r"^there is no region \[7\]: the photo's regions are \[1\], \[2\] — "):
        alice.ask("[7] is Kit Harington", thread_id="t")
    with pytest.raises(InvalidInputError, match="'this' could be any of them"):
        alice.ask("this is Kit Harington", thread_id="t")
    sky = (0.0, 300.0, 200.0, 460.0)  # a corner with no face
    with pytest.raises(InvalidInputError, match=r"^no face in the region, so it cannot be remembered as a person — "):
        alice.remember("Kit Harington", info="an actor", photos=[scene], region=sky)
    with pytest.raises(InvalidInputError, match=r"^a region was given without a photo — "):
        alice.remember("Kit Harington", info="an actor", region="[1]")
    with pytest.raises(InvalidInputError, match=r"^there is no region \[3\]: the photo's regions are \[1\], \[2\]"):
        alice.remember("Kit Harington", info="an actor", photos=[scene], region="[3]")  # numbered as ask shows it
    assert alice.entities() == []
    with pytest.raises(InvalidInputError, match="no photo in this conversation"):
        alice.ask("[1] is Kit Harington", thread_id="fresh")


@pytest.mark.integration
def test_remember_from_a_region_of_a_group_photo(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    alice = _assistant(tmp_path, fake)
    scene = faces_dir / "scenes" / "two_people.jpg"
    biden = alice.remember("Joe Biden", info="Joe, the 46th president", photos=[scene], region=(740, 20, 1000, 300))
    assert len(biden.photos) == 1
    alice.ask("Who is here?", scene, thread_id="t")  # Biden is [1] now, the unknown Obama [2]
    obama = alice.remember("Barack Obama", info="Barack, the 44th president", region="[2]", thread_id="t")
    assert len(obama.photos) == 1
    names = {e.name for e in alice.ask("Who?", scene).regions}
    assert names == {"Barack Obama", "Joe Biden"}
    bob = _assistant(tmp_path, fake, user="bob")
    with pytest.raises(NotFoundError, match="there is no thread 't'"):
        bob.remember("Mallory", info="x", region="[1]", thread_id="t")  # alice's thread
    with pytest.raises(NotFoundError, match="there is no thread 't'"):
        bob.resume("t", "yes")
    assert bob.entities() == [] and {e.name for e in alice.entities()} == {"Barack Obama", "Joe Biden"}


@pytest.mark.integration
def test_a_form_names_a_region_like_the_words(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    """`Assistant.teach` is what a front end's "name this face" calls: the same proposal, the same resume."""
    alice = _assistant(tmp_path, fake)
    alice.ask("Who is here?", faces_dir / "scenes" / "two_people.jpg", thread_id="t")
    proposal = alice.teach("t", 2, "Joe Biden, Jr.", info="the 46th president")  # a comma in the name
    assert proposal.change is not None and (proposal.change.name, proposal.change.box) == ("Joe Biden, Jr.", RIGHT)
    alice.resume("t", "yes")
    assert [e.name for e in alice.entities()] == ["Joe Biden, Jr."]


@pytest.mark.integration
def test_the_cli_asks_y_n_or_takes_yes(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    from rcmu_agent.cli import app

    env = {
        "RCMU_HOME": str(tmp_path),
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "RCMU_BACKEND": "openai",
        "RCMU_BASE_URL": fake.url,
        "RCMU_MODEL": "m",
    }
    runner = CliRunner()

    def rcmu(*args: str, answer: str | None = None) -> Any:
        return runner.invoke(app, list(args), env=env, input=answer, catch_exceptions=False)

    scene = str(faces_dir / "scenes" / "two_people.jpg")
    started = rcmu("ask", "--thread", "T", scene, "Who is here?")
    assert started.exit_code == 0 and "[1] unknown — person at 253,47,409,203" in started.stderr
    assert 'name one in the thread: "[1] is NAME"' in started.stderr
    declined = rcmu("ask", "--thread", "T", "[1] is Barack Obama, the 44th president", answer="n\n")
    assert declined.exit_code == 0, declined.output
    assert "Remember Barack Obama (person) from region [1] at (253,47,409,203)?" in declined.stderr
    assert "Nothing changed: Barack Obama (person) was not remembered." in declined.stdout  # after the echoed "n"
    assert json.loads(rcmu("list", "--json").stdout) == []
    done = rcmu("ask", "--thread", "T", "[1] is Barack Obama, the 44th president", "--yes")
    assert done.exit_code == 0 and done.stdout.startswith("Remembered Barack Obama (person) from region [1]")
    assert [e["name"] for e in json.loads(rcmu("list", "--json").stdout)] == ["Barack Obama"]
    one_off = rcmu("ask", "forget Barack Obama", "--yes")
    assert one_off.exit_code == 2 and "confirmed in a thread — ask again with --thread T" in one_off.stderr


@pytest.mark.integration
def test_a_follow_up_after_a_photo_that_never_arrived_says_so(tmp_path: Path, fake: FakeServer) -> None:
    """Issue 21: a chat's photo that fails to load leaves the thread without one; the next turn must not
    be answered from memory alone as if it were about the photo."""
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from rcmu_agent.graph import build_graph
    from rcmu_agent.parts import Parts

    settings = Settings(home=tmp_path, user="alice", object_detector=None, image_embedding_model=None)
    graph = build_graph(Parts(settings), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    broken = {"type": "image", "base64": "aGVsbG8gd29ybGQ=", "mime_type": "image/jpeg"}  # "hello world"
    with pytest.raises(InvalidInputError):
        graph.invoke({"messages": [HumanMessage(content=[{"type": "text", "text": "Who?"}, broken])]}, config)
    with pytest.raises(InvalidInputError, match="the photo sent earlier in this thread could not be read"):
        graph.invoke({"messages": [HumanMessage(content="And on the left?")]}, config)


# ---- the chat model deciding (RCMU_CHAT_MODEL) -------------------------------------------------------------


def _router(request: Recorded) -> Reply:
    """A scripted tool-calling chat model: free-form naming becomes `remember_region`, the rest no call."""
    if not request.body.get("tools"):
        return Reply(text="The person [1] is on the left.")  # RC-Qwen2-VL's answer (the openai backend)
    turn = str(request.body["messages"][-1]["content"])
    if "guy standing on the right" in turn:
        call = {"name": "remember_region", "arguments": {"region": 2, "name": "Joe Biden", "info": "the president"}}
        return Reply(tool_calls=[call])
    if "drop everything about Joe" in turn:
        return Reply(tool_calls=[{"name": "forget", "arguments": {"name": "Joe Biden"}}])
    return Reply(text="QUESTION")


@pytest.mark.integration
def test_a_chat_model_picks_the_action_and_region(tmp_path: Path, faces_dir: Path) -> None:
    with serve(FakeServer(responder=_router)) as server:
        alice = _assistant(tmp_path, server, chat_model="openai:router", chat_base_url=server.url)
        alice.ask("Who is here?", faces_dir / "scenes" / "two_people.jpg", thread_id="t")
        proposal = alice.ask("so the guy standing on the right, that's Joe Biden", thread_id="t")
        assert proposal.change is not None and (proposal.change.region, proposal.change.box) == (2, RIGHT)
        assert proposal.change.info == "Joe Biden, the president"
        routed = [r for r in server.requests if r.body.get("tools")][-1]
        assert {t["function"]["name"] for t in routed.body["tools"]} == {
            "remember_region", "update_info", "forget", "list_memory",
        }  # fmt: skip
        assert "[2] = an unrecognised person at (778,57,965,243)" in str(routed.body["messages"])
        alice.resume("t", "yes")
        question = alice.ask("And who is on the left?", thread_id="t")
        assert question.change is None and question.text == "The person [1] is on the left."
        assert alice.ask("please drop everything about Joe", thread_id="t").change.action == "forget"  # type: ignore[union-attr]
    # the router's server gone: questions are still answered, and the grammar reads the explicit forms
    broken = _assistant(tmp_path, server, chat_model="openai:router", chat_base_url="http://127.0.0.1:9/v1")
    assert broken.ask("who do you know?", thread_id="t").change is not None


@pytest.mark.integration
def test_a_turn_with_its_own_photo(tmp_path: Path, fake: FakeServer, faces_dir: Path, shared_data: Path) -> None:
    """ "this is …" with the photo in the same turn: detected first, then proposed; a thing on a photo where
    nothing was detected is taught from the whole photo."""
    alice = _assistant(tmp_path, fake)
    face = alice.ask("this is Barack Obama, my friend", faces_dir / "scenes" / "obama1.jpg", thread_id="t")
    assert face.change is not None and face.change.region == 1 and face.change.info == "Barack Obama, my friend"
    cat = alice.ask("this is Chelsea, my cat", shared_data / "objects" / "chelsea.png", thread_id="c")
    assert cat.change is not None and (cat.change.category, cat.change.region, cat.change.box) == ("cat", None, None)
    alice.resume("c", "yes")
    assert [(e.name, e.category) for e in alice.entities()] == [("Chelsea", "cat")]
    with pytest.raises(InvalidInputError, match="no face to remember a person by"):
        alice.ask("this is Chelsea Smith", shared_data / "objects" / "chelsea.png", thread_id="c2")


@pytest.mark.integration
def test_the_remember_tool_takes_a_region(tmp_path: Path, fake: FakeServer, faces_dir: Path) -> None:
    """A host model teaches one person of a group photo: a box, or the `[n]` ask_about_photo lists."""
    from langchain_core.messages import ToolMessage

    from rcmu_agent.tools import rcmu_tools

    alice = _assistant(tmp_path, fake, allowed_roots=[faces_dir])
    tools = {t.name: t for t in rcmu_tools(alice, user="alice")}

    def call(tool: str, **args: Any) -> ToolMessage:
        message = tools[tool].invoke({"name": tool, "args": args, "id": "call-1", "type": "tool_call"})
        assert isinstance(message, ToolMessage)
        return message

    scene = str(faces_dir / "scenes" / "two_people.jpg")
    asked = call("ask_about_photo", photo=scene, question="Who is here?")
    assert "[2] = an unrecognised person at (778,57,965,243)" in str(asked.content)
    biden = call("remember", name="Joe Biden", info="Joe, the 46th president", photos=[scene], region="[2]")
    assert biden.status == "success" and biden.artifact["entity"]["photos"] == 1
    obama = call("remember", name="Barack Obama", info="Barack", photos=[scene], region=[240, 30, 420, 220])
    assert obama.status == "success"
    no_face = call("remember", name="Kit", info="an actor", photos=[scene], region=[0, 300, 200, 460])
    assert no_face.status == "error" and "no face in the region" in str(no_face.content)
    two = call("remember", name="Kit", info="an actor", photos=[scene, scene], region="[1]")
    assert two.status == "error" and "give exactly one photo" in str(two.content)
    names = {r["name"] for r in call("ask_about_photo", photo=scene, question="Who?").artifact["regions"]}
    assert names == {"Barack Obama", "Joe Biden"}
