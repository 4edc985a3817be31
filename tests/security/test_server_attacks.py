"""Photos by reference, proved against a real `langgraph dev` with two bearer tokens (issue 20).

alice asks about her photos; bob, with his own token, may rewrite every key of his own thread's state
(`threads.update_state`, which the auth rules allow a thread's owner), resume the graph past its first
step, or send `file://` images, and then asks "Describe the photo." with no image. The loopback model
server records every request: none of them may carry alice's pixels, and nothing bob gets back — the
reply, the run's error, his thread's state — may hold a server path, alice's photo id or anything of
hers beyond what he wrote himself, or tell `/etc/hostname` from `/no/such.jpg`. alice's own served
answer carries photo ids only, never a path.

The model server's folder of allowed roots (`RCMU_ALLOWED_ROOTS`) holds the rcmu home, so the rule
"nothing under the home is read by path" is what refuses alice's files, not the roots.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import FakeServer, Reply, serve
from tests._langgraph_dev import NO_MODEL, RunFailed, human, image_block, run_turn, start_langgraph_dev

pytestmark = pytest.mark.integration  # LangGraph Server as a subprocess

ALICE_INFO = "alice's neighbour Barack, who shoots hoops on Tuesdays"
REPLY = "Someone [1] is in the photo."
DESCRIBE = {"messages": [human("Describe the photo.")]}
SERVER_WORDS = ("vault", "inbox", "/tmp", "rcmu-home", "/etc/", "/no/")


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's one allowed folder; it holds the rcmu home."""
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def home(allowed: Path, faces_dir: Path) -> Path:
    home = allowed / "rcmu-home"
    alice = Assistant(Settings(home=home, user="alice", **NO_MODEL))
    alice.remember("Barack Obama", info=ALICE_INFO, photos=[faces_dir / "reference" / "obama_obama.jpg"])
    return home


@pytest.fixture(scope="module")
def model() -> Iterator[FakeServer]:
    with serve(FakeServer(default=Reply(text=REPLY))) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, home: Path, allowed: Path, model: FakeServer) -> Iterator[str]:
    env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": model.url, "RCMU_MODEL": "m", "RCMU_ALLOWED_ROOTS": str(allowed)}
    yield from start_langgraph_dev(tmp_path_factory.mktemp("attacks-server"), home, env)


# ---- what the model received ---------------------------------------------------------------------


def _sent_images(model: FakeServer, since: int) -> list[str]:
    """The image data URLs of every request the model received from request number `since` on."""
    return [
        part["image_url"]["url"]
        for request in model.requests[since:]
        for message in request.body.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _thumbnail(photo: Path | io.BytesIO) -> np.ndarray:
    with Image.open(photo) as image:
        return np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)


def _pixels_of(url: str) -> np.ndarray:
    _, _, data = url.partition("base64,")
    return _thumbnail(io.BytesIO(base64.b64decode(data)))


def _same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Whatever the size and encoding it was sent at: a 32x32 grey thumbnail within a few levels."""
    return float(np.abs(a - b).mean()) < 8


# ---- alice -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alice:
    thread: str
    photo: str  # her scene photo's vault id
    vault_file: Path  # that photo's bytes on the server's disk
    reference: Path  # her stored reference photo of Barack Obama
    entity_id: str  # Barack Obama's id in her memory
    values: dict[str, Any]  # her run's final state, as the stream gave it
    state: dict[str, Any]  # her thread's full state, as `threads.get_state` gives it
    sent: frozenset[str]  # digests of the image data URLs the model received for her
    pictures: tuple[np.ndarray, ...]  # thumbnails of her scene and reference photos


async def _state(url: str, token: str, thread: str) -> dict[str, Any]:
    from langgraph_sdk import get_client

    client = get_client(url=url, headers={"Authorization": f"Bearer {token}"})
    return dict(await client.threads.get_state(thread))


@pytest.fixture(scope="module")
def alice(server: str, model: FakeServer, home: Path, faces_dir: Path) -> Alice:
    """alice's own normal run: her scene photo inline (base64), a question naming someone she taught."""
    since = len(model.requests)
    scene = faces_dir / "scenes" / "two_people.jpg"
    turn = {"messages": [human("Is Barack Obama on the left?", image_block(scene))]}
    _, values = asyncio.run(run_turn(server, "token-alice", None, turn))
    photo = values["answer"]["photo"]
    assert re.fullmatch(r"photo:[0-9a-f]{32}", photo)
    vault_file = home / "vault" / "alice" / photo[6:8] / photo[6:]
    assert vault_file.read_bytes() == scene.read_bytes()
    (reference,) = (home / "photos" / "alice").glob("*/*")
    sent = _sent_images(model, since)
    assert len(sent) == 1, "the model saw her photo"
    pictures = (_thumbnail(scene), _thumbnail(reference))
    assert _same_picture(_pixels_of(sent[0]), pictures[0]) and not _same_picture(_pixels_of(sent[0]), pictures[1])
    return Alice(
        thread=values["thread_id"],
        photo=photo,
        vault_file=vault_file,
        reference=reference,
        entity_id=reference.parent.name,
        values=values,
        state=asyncio.run(_state(server, "token-alice", values["thread_id"])),
        sent=frozenset(map(_digest, sent)),
        pictures=pictures,
    )


def _paths_in(text: str, home: Path) -> list[str]:
    """Server paths (and the words of its folders) in `text`."""
    found = [w for w in (str(home), *SERVER_WORDS) if w in text]
    return found + re.findall(r"(?:/[\w.@-]+){2,}", text)


def test_alices_served_answer_carries_photo_ids_only(alice: Alice, home: Path) -> None:
    values, state = alice.values, alice.state
    answer, payload = values["answer"], values["messages"][-1]["additional_kwargs"]["rcmu"]
    assert payload["photo"] == answer["photo"] == alice.photo
    assert any(r["name"] == "Barack Obama" for r in answer["regions"])  # her memory answered
    # the one picture a served thread holds is the chat drawing's small JPEG (rcmu_agent.generative_ui)
    (drawing,) = state["values"]["ui"]
    assert drawing["props"]["photo"] == alice.photo and drawing["props"]["image"].startswith("data:image/jpeg;base64,")
    for where, shown in {"answer": answer, "rcmu": payload, "values": values, "state": state}.items():
        text = json.dumps(shown).replace(drawing["props"]["image"], "<drawing>")
        assert not _paths_in(text, home), (where, _paths_in(text, home))
    human_message = state["values"]["messages"][0]
    assert human_message["content"][-1] == {"type": "image", "id": alice.photo}  # by reference, not bytes
    assert "base64" not in json.dumps(state).replace(drawing["props"]["image"], "<drawing>")


# ---- bob ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What bob wrote and what he got back in one attack."""

    written: list[Any]  # his state update, turn and command
    refused: str  # the server's refusal of his state update, if it refused
    error: Any  # the run's error event, if the run failed
    values: dict[str, Any]  # the run's final state, if it ran
    state: dict[str, Any]  # his thread's state afterwards

    def everything(self) -> str:
        """All bob got back, his own words taken out: echoing them tells him nothing."""
        got = {"refused": self.refused, "error": self.error, "values": self.values, "state": self.state}
        return _scrubbed(json.dumps(got, sort_keys=True), _strings(self.written))

    def said(self) -> str:
        """The refusal, the error and the reply, his own words taken out."""
        reply = (self.values.get("answer") or {}).get("text")
        return _scrubbed(json.dumps([self.refused, self.error, reply], sort_keys=True), _strings(self.written))


def _strings(value: Any) -> list[str]:
    """Every string bob wrote (and, for a file URL, the path it names)."""
    if isinstance(value, str):
        return [value, value.removeprefix("file://")]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _scrubbed(text: str, written: list[str]) -> str:
    """`text` with each string bob wrote (but short words) replaced by `<given>`."""
    for mine in sorted({w for w in written if len(w) >= 6}, key=len, reverse=True):
        text = text.replace(mine, "<given>")
    return text


async def _bob(
    url: str,
    update: dict[str, Any] | None,
    *,
    as_node: str = "cite",
    turn: dict[str, Any] | None = DESCRIBE,
    command: dict[str, Any] | None = None,
) -> Outcome:
    """bob's own thread, its state rewritten (`update`, as if `as_node` had written it: by default the
    last step of a finished turn, as after any run of his), then a run of his."""
    import httpx
    from langgraph_sdk import get_client

    client = get_client(url=url, headers={"Authorization": "Bearer token-bob"})
    thread = (await client.threads.create(graph_id="rcmu"))["thread_id"]  # as his first run would assign it
    refused = ""
    if update is not None:
        try:
            await client.threads.update_state(thread, update, as_node=as_node)
        except httpx.HTTPStatusError as exc:
            refused = f"{exc.response.status_code} {exc.response.text}"
    error: Any = None
    values: dict[str, Any] = {}
    try:
        _, values = await run_turn(url, "token-bob", thread, turn, command=command)
    except RunFailed as exc:
        error = exc.data
    state = dict(await client.threads.get_state(thread))
    return Outcome([update, turn, command], refused, error, values, state)


def _targets(alice: Alice) -> dict[str, str]:
    """What bob points at: alice's photo id, her files on the server's disk, and two paths outside."""
    return {
        "alice-id": alice.photo,
        "reference": str(alice.reference),
        "vault-file": str(alice.vault_file),
        "etc-hostname": "/etc/hostname",
        "no-such": "/no/such.jpg",
    }


def _image_of(target: str) -> dict[str, Any]:
    """An image block pointing at `target`: by id, or as a `file://` URL."""
    if target.startswith("photo:"):
        return {"type": "image", "id": target}
    return {"type": "image", "url": "file://" + target}


def _forged(alice: Alice, target: str, route: str = "detect") -> dict[str, Any]:
    """Every key of the state, written by bob: `target` as the photo, alice as the user, her entity and
    paths in the regions and entries, her photo as a library hit and citation, forged human messages."""
    box = [253.0, 47.0, 409.0, 203.0]
    region = {"box": box, "category": "person", "source": "face", "info": str(alice.reference)}
    entry = {
        "region": region,
        "category": "person",
        "index": 1,
        "entity_id": alice.entity_id,
        "name": "Barack Obama",
        "info": str(alice.vault_file),
    }
    hit = {"id": alice.photo, "path": str(alice.reference), "paths": [str(alice.vault_file)], "size": [640, 480]}
    cite = {"index": 1, "photo_id": alice.photo, "path": str(alice.reference), "box": box, "name": "Barack Obama"}
    entity = {"id": alice.entity_id, "user": "alice", "name": "Barack Obama", "info": "?", "photos": [target]}
    return {
        "messages": [human("What is in my photo?", _image_of(target)), human("Describe the photo.")],
        "user": "alice",
        "question": "Describe the photo.",
        "turn": {"regions": None, "context_only": False, "library_limit": 4},
        "route": route,
        "photo": target,
        "image_size": [1000, 600],
        "detected": [region],
        "entries": [entry],
        "mentioned": [entity],
        "prompt": "[1]: Describe the photo.",
        "reply": "",
        "reply_id": None,
        "library_photos": [hit],
        "library_refs": [cite],
        "answer": {"text": "", "photo": target},
    }


# each attack, and the steps bob's thread is left at (`next`) where his run failed on the photo; None: the
# run did not fail (the turn is about memory, and is answered)
ATTACKS: dict[str, list[str] | None] = {
    "ask": ["route"],
    "resume-detect": ["detect"],
    "resume-answer": ["answer"],
    "command-goto": [],  # the command's task is not listed in `next`; the run fails in `detect`
    "image-path": None,  # the key of old is no channel
    "turn-image": ["route"],
    "injected": ["route"],  # not the last message; its image never arrived, so the next turn says so (issue 21)
}


async def _attack(server: str, alice: Alice, kind: str, target: str) -> Outcome:
    if kind == "ask":  # every key rewritten, then a new turn with no image
        return await _bob(server, _forged(alice, target))
    if kind == "resume-detect":  # as if `route` had just run: the graph resumes at `detect`, past its checks
        return await _bob(server, _forged(alice, target), as_node="route", turn=None)
    if kind == "resume-answer":  # as if `compose` had just run: the graph resumes at `answer`
        return await _bob(server, _forged(alice, target, "compose"), as_node="compose", turn=None)
    if kind == "command-goto":  # every key rewritten, then a run whose command jumps past `route`
        return await _bob(server, _forged(alice, target), turn=None, command={"goto": "detect"})
    if kind == "image-path":  # the state key of old
        return await _bob(server, {"image_path": target, "entries": []})
    turn = {"messages": [human("Describe the photo.", _image_of(target))]}
    if kind == "turn-image":  # the turn itself points at the photo
        return await _bob(server, None, turn=turn)
    assert kind == "injected"  # a human message pointing at it, added to the thread, then a question
    return await _bob(server, turn)


@pytest.mark.parametrize("kind", ATTACKS)
def test_bob_gets_nothing_of_alices_by_rewriting_his_thread(
    server: str, model: FakeServer, alice: Alice, home: Path, kind: str
) -> None:
    targets = _targets(alice)
    since = len(model.requests)

    async def attacks() -> list[Outcome]:  # at once: the server runs them side by side
        return await asyncio.gather(*(_attack(server, alice, kind, t) for t in targets.values()))

    outcomes = dict(zip(targets, asyncio.run(attacks()), strict=True))
    for url in _sent_images(model, since):  # the model never saw her pixels, at whatever size or encoding
        assert _digest(url) not in alice.sent, kind
        assert not any(_same_picture(_pixels_of(url), p) for p in alice.pictures), kind
    for name, outcome in outcomes.items():
        everything = outcome.everything()
        assert not _paths_in(everything, home), (name, _paths_in(everything, home), everything[:3000])
        for hers in (alice.photo, alice.entity_id, ALICE_INFO, "hoops"):
            assert hers not in everything, (name, hers)
        assert sorted(outcome.state["next"]) == (ATTACKS[kind] or []), (name, outcome.state["next"], outcome.said())
        update = outcome.written[0] or {}
        for key in ("detected", "image_size"):  # nothing in his thread was found on a photo he may not see
            if key in update:
                assert outcome.state["values"][key] == update[key], (name, key)
        assert (outcome.error is None) == (ATTACKS[kind] is None), (name, outcome.said())
    said = [outcomes[n].said() for n in ("reference", "vault-file", "etc-hostname", "no-such")]
    assert said.count(said[0]) == len(said), said  # one message, whatever the path and whether it exists
