"""Proof for issue 20's findings: a photo path is read once, through the door, and strangers' bytes
never reach a decoder that runs other programs.

1. Check, then read again. bob's file (or a folder on its way) is swapped, over and over, for a
   symlink to alice's stored photo (her reference photo under `RCMU_HOME/photos/alice/…`, or a blob
   in her vault) while bob's calls run: through `read_photo_file` itself, through bob's LangChain
   `ask_about_photo` and through a real MCP server. Every call must either answer about bob's photo
   (the id of the bytes it read is the hash of bob's photo, and the pixels the model received are
   bob's) or fail with a one-line refusal; the model never receives alice's pixels. The same swap is
   also made at each moment of the door on purpose, and a naive check-then-read under the same race
   is shown to read alice's bytes (so the race is real).
2. Ghostscript on stranger bytes. EPS (one with an endless loop), PostScript and PDF sent inline —
   bytes, base64, data URLs and image blocks — through the tools, MCP, `Assistant.ask`, the graph's
   message input and a region's mask are each refused with one line, and no `gs` ever starts: a
   stand-in `gs` first on `PATH` writes a marker file when run, and Pillow is made to look for it
   afresh.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import io
import os
import random
import shlex
import shutil
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from mcp.client.session import ClientSession
from PIL import EpsImagePlugin, Image
from pydantic import SecretStr

from rcmu_agent import Assistant, Settings
from rcmu_agent.door import read_photo_file
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.graph import build_graph
from rcmu_agent.images import load_image
from rcmu_agent.parts import Parts
from rcmu_agent.schema import Region
from rcmu_agent.testing import FakeServer, Recorded, Reply, serve
from rcmu_agent.tools import rcmu_tools
from rcmu_agent.vault import photo_id
from tests.tools.test_mcp import _env, stdio_session

OUTSIDE = "is outside the allowed folders"
UNREADABLE = "is not a readable photo"
NOT_A_PHOTO = "is not an image rcmu can read"
ANSWER = "Kit Harington [1] is here."

# ---- the swap -------------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
needs_exchange = pytest.mark.skipif(not hasattr(_LIBC, "renameat2"), reason="needs Linux renameat2")


def exchange(a: Path, b: Path) -> None:
    """Swap two names in one step (`renameat2(RENAME_EXCHANGE)`): both always exist, so a reader
    sees bob's file or the link, never a gap."""
    if _LIBC.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(a))


@dataclass(frozen=True)
class Swap:
    """`asked` is the path bob's call names; `entry` (the file itself, or a folder on its way) trades
    places with `twin`, a symlink to alice's file or to the folder holding it."""

    asked: Path
    entry: Path
    twin: Path
    label: str

    def flip(self) -> None:
        exchange(self.entry, self.twin)


def stage(root: Path, alice_files: dict[str, Path], bob: bytes) -> list[Swap]:
    """For each of alice's files, a file of bob's to swap for a link to it, and a folder of bob's
    (holding a photo of his under the same name as hers) to swap for a link to her folder. Each copy
    of bob's photo is a file of its own: no hard links, which the door refuses anyway."""
    swaps = []
    for label, target in alice_files.items():
        asked = root / f"{label}.jpg"
        asked.write_bytes(bob)
        (root / f".{label}.swap").symlink_to(target)
        swaps.append(Swap(asked, asked, root / f".{label}.swap", f"file -> {label}"))
        folder = root / f"{label}-album"
        folder.mkdir()
        (folder / target.name).write_bytes(bob)
        (root / f".{label}-album.swap").symlink_to(target.parent)
        swaps.append(Swap(folder / target.name, folder, root / f".{label}-album.swap", f"folder -> {label}'s folder"))
    return swaps


@dataclass
class Swapper:
    """A background thread flipping every swap, pausing a random few hundred microseconds or not at
    all between rounds; on exit each name is back as staged."""

    swaps: list[Swap]
    rounds: int = 0
    halt: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(20)
        while not self.halt.is_set():
            for swap in self.swaps:
                swap.flip()
            self.rounds += 1
            pause = rng.choice((0.0, 0.0, 0.0001, 0.0005))
            if pause:
                time.sleep(pause)
            else:
                time.sleep(0)  # let the caller's thread run


@contextlib.contextmanager
def swapping(swaps: list[Swap]) -> Iterator[Swapper]:
    swapper = Swapper(swaps)
    thread = threading.Thread(target=swapper.run, name="swapper", daemon=True)
    thread.start()
    try:
        yield swapper
    finally:
        swapper.halt.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        if swapper.rounds % 2:
            for swap in swaps:
                swap.flip()
        assert all(s.asked.is_file() and not s.asked.is_symlink() for s in swaps)


def _refusal(text: str) -> bool:
    """One line, and one of the door's two sentences."""
    return "\n" not in text and (OUTSIDE in text or UNREADABLE in text)


def _small_jpeg(path: Path, side: int) -> bytes:
    with Image.open(path) as img:
        small = img.convert("RGB")
    small.thumbnail((side, side))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(small_photos: Path) -> dict[str, bytes]:
    """Real faces, small so hundreds of calls stay fast: bob's is Kit Harington (landscape), alice's
    Barack Obama (portrait)."""
    return {
        "bob": _small_jpeg(small_photos / "kit_harington.jpg", 320),
        "alice": _small_jpeg(small_photos / "obama.jpg", 320),
    }


# ---- 1a. the door itself ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DoorStage:
    home: Path
    bob_root: Path
    swaps: list[Swap]

    def read(self, swap: Swap) -> bytes:
        """What the door reads for bob (a server caller: the home denied, hard links refused)."""
        return read_photo_file(swap.asked, [self.bob_root], deny=[self.home], single_link=True).data


@pytest.fixture()
def door_stage(tmp_path: Path, photos: dict[str, bytes]) -> DoorStage:
    """alice's files laid out as the vault and `remember` keep them (no models needed to read bytes)."""
    home = tmp_path / "rcmu"
    reference = home / "photos" / "alice" / "0a1b2c3d4e5f" / "c80fc0ad655bd943.img"
    pid = photo_id(photos["alice"]).removeprefix("photo:")
    blob = home / "vault" / "alice" / pid[:2] / pid
    for path in (reference, blob):
        path.parent.mkdir(parents=True)
        path.write_bytes(photos["alice"])
    bob_root = tmp_path / "bob"
    bob_root.mkdir()
    return DoorStage(home, bob_root, stage(bob_root, {"reference": reference, "vault": blob}, photos["bob"]))


# Which check stops the swap made at each moment of the door (see `rcmu_agent.door`'s docstring).
MOMENTS = {
    # swapped after the path was resolved, before it is opened
    ("file", "after resolving"): UNREADABLE,  # O_NOFOLLOW: the last component is now a link
    ("folder", "after resolving"): OUTSIDE,  # the file the kernel opened is alice's: /proc/self/fd tells
    # swapped after bob's file was opened: what was opened is bob's, but the path no longer names it
    ("file", "after opening"): UNREADABLE,
    ("folder", "after opening"): UNREADABLE,
    # swapped after resolving, and back after opening: opened alice's, the path names bob's again
    ("file", "after resolving, back after opening"): UNREADABLE,
    ("folder", "after resolving, back after opening"): UNREADABLE,
}


@pytest.mark.unit
@needs_exchange
@pytest.mark.parametrize(("kind", "moment"), list(MOMENTS))
def test_the_door_refuses_a_swap_made_at_each_of_its_moments(
    door_stage: DoorStage, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, kind: str, moment: str
) -> None:
    real_realpath, real_open = os.path.realpath, os.open
    for swap in (s for s in door_stage.swaps if s.label.startswith(kind)):
        flips: list[str] = []

        def realpath(path: Any, *args: Any, swap: Swap = swap, flips: list[str] = flips, **kwargs: Any) -> Any:
            resolved = real_realpath(path, *args, **kwargs)
            if os.fspath(path) == str(swap.asked) and moment.startswith("after resolving") and not flips:
                swap.flip()
                flips.append("resolved")
            return resolved

        def opened(path: Any, *args: Any, swap: Swap = swap, flips: list[str] = flips, **kwargs: Any) -> int:
            fd = real_open(path, *args, **kwargs)
            if os.fspath(path) == str(swap.asked) and (moment == "after opening" or "back" in moment):
                swap.flip()
                flips.append("opened")
            return fd

        monkeypatch.setattr(os.path, "realpath", realpath)
        monkeypatch.setattr(os, "open", opened)
        try:
            with pytest.raises(InvalidInputError) as raised:
                read = door_stage.read(swap)
                assert read != photos["alice"], f"{swap.label}, {moment}: alice's photo was read"
        finally:
            monkeypatch.setattr(os.path, "realpath", real_realpath)
            monkeypatch.setattr(os, "open", real_open)
            if len(flips) % 2:
                swap.flip()
        assert flips, "the swap was never made"
        assert MOMENTS[kind, moment] in str(raised.value) and "\n" not in str(raised.value), (swap.label, raised.value)
        assert door_stage.read(swap) == photos["bob"]  # unswapped, the same path reads bob's photo


@pytest.mark.unit
@needs_exchange
def test_a_race_against_the_door_reads_bobs_photo_or_refuses(door_stage: DoorStage, photos: dict[str, bytes]) -> None:
    """The door read 400 times while a thread swaps; beside each, the old main's check-then-read of the
    same path, which must be seen to read alice's bytes (else the race would prove nothing)."""
    door: Counter[str] = Counter()
    naive: Counter[str] = Counter()
    with swapping(door_stage.swaps) as swapper:
        for n in range(400):
            swap = door_stage.swaps[n % len(door_stage.swaps)]
            try:
                data = door_stage.read(swap)
                door["bob" if data == photos["bob"] else "ALICE" if data == photos["alice"] else "other"] += 1
            except InvalidInputError as exc:
                assert _refusal(str(exc)), exc
                door["outside" if OUTSIDE in str(exc) else "unreadable"] += 1
            try:  # the old way: resolve and check, then open the path again
                if Path(os.path.realpath(swap.asked)).is_relative_to(door_stage.bob_root):
                    data = swap.asked.read_bytes()
                    naive["bob" if data == photos["bob"] else "ALICE"] += 1
            except OSError:
                naive["error"] += 1
    assert door["ALICE"] == 0 and door["other"] == 0, door
    assert door["bob"] > 0, door  # bob's photo is read whenever the path is his
    assert naive["ALICE"] > 0, (naive, swapper.rounds)  # the same race leaks through a check-then-read


# ---- 1b. the race through bob's LangChain tool and through MCP ------------------------------------------


@dataclass
class World:
    """One rcmu home: alice taught Barack Obama (her reference photo is stored under the home) and has
    a photo in her vault; bob taught Kit Harington and may read photos from `bob_root` only."""

    base: Path
    home: Path
    bob_root: Path
    assistant: Assistant
    server: FakeServer
    alice_files: dict[str, Path]


@pytest.fixture(scope="module")
def model() -> Iterator[FakeServer]:
    with serve(FakeServer(default=Reply(text=ANSWER))) as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes], model: FakeServer) -> World:
    base = tmp_path_factory.mktemp("door-world")
    home, bob_root = base / "rcmu", base / "bob"
    bob_root.mkdir()
    settings = Settings(
        home=home,
        backend="openai",
        base_url=model.url,
        model="m",
        api_key=SecretStr("sk-test"),
        object_detector=None,
        image_embedding_model=None,
        allowed_roots=[bob_root],  # RCMU_ALLOWED_ROOTS: bob's folder
    )
    assistant = Assistant(settings)
    obama = assistant.remember("Barack Obama", info="alice's friend", photos=[photos["alice"]], user="alice")
    assistant.remember("Kit Harington", info="bob's colleague", photos=[photos["bob"]], user="bob")
    pid = assistant.parts.vault.put("alice", photos["alice"])
    (reference,) = obama.photos
    blob = home / "vault" / "alice" / pid[6:8] / pid[6:]
    assert Path(reference).is_relative_to(home / "photos" / "alice") and blob.read_bytes() == photos["alice"]
    return World(base, home, bob_root, assistant, model, {"reference": Path(reference), "vault": blob})


def _signature(img: Image.Image) -> np.ndarray:
    """A photo's pixels in brief: 16x16 grey levels, whatever its size or encoding."""
    return np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)


def _sent_images(requests: list[Recorded]) -> list[Image.Image]:
    images = []
    for request in requests:
        for message in request.body["messages"]:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part.get("type") == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
                        images.append(img.convert("RGB"))
    return images


def assert_model_saw_only_bobs_photo(requests: list[Recorded], photos: dict[str, bytes]) -> None:
    """Each image the model received is bob's photo (within JPEG noise) and far from alice's."""
    bob, alice = (_signature(load_image(photos[who])) for who in ("bob", "alice"))
    apart = float(np.abs(bob - alice).mean())
    assert apart > 20, apart  # the two photos are told apart easily
    images = _sent_images(requests)
    assert len(images) == len(requests)  # one photo per question
    for img in images:
        sig = _signature(img)
        to_bob, to_alice = float(np.abs(sig - bob).mean()), float(np.abs(sig - alice).mean())
        assert to_bob < 4 and to_alice > apart / 2, f"the model received a photo {to_alice:.1f} from alice's"


def _tool_call(tool: BaseTool, **args: Any) -> ToolMessage:
    message = tool.invoke({"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    return message


@pytest.mark.integration
@needs_exchange
def test_a_symlink_swap_race_through_bobs_ask_about_photo_never_reaches_alices_photo(
    world: World, photos: dict[str, bytes]
) -> None:
    root = world.bob_root / "langchain"
    root.mkdir()
    swaps = stage(root, world.alice_files, photos["bob"])
    ask = {t.name: t for t in rcmu_tools(world.assistant, user="bob")}["ask_about_photo"]
    bobs = photo_id(photos["bob"])
    before = len(world.server.requests)
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    with swapping(swaps) as swapper:
        for n in range(208):
            swap = swaps[n % len(swaps)]
            message = _tool_call(ask, photo=str(swap.asked), question="Who is this?")
            text = str(message.content)
            if message.status == "success":
                assert message.artifact["photo"] == bobs, (swap.label, message.artifact)
                assert text.startswith(ANSWER) and "[1] = Kit Harington" in text, text
                outcomes["answered"] += 1
            else:
                assert text.startswith("error: photo ") and _refusal(text), (swap.label, text)
                outcomes["outside" if OUTSIDE in text else "unreadable"] += 1
    elapsed = time.monotonic() - started
    sent = world.server.requests[before:]
    assert len(sent) == outcomes["answered"] > 0, outcomes  # a refused call sends nothing
    assert_model_saw_only_bobs_photo(sent, photos)
    assert outcomes["outside"] > 0, outcomes  # alice's file was there to be taken, many times
    print(
        f"\nLangChain race: {sum(outcomes.values())} calls in {elapsed:.1f} s, {swapper.rounds} swap rounds: {outcomes}"
    )
    assert elapsed < 120


@pytest.mark.integration
@needs_exchange
def test_a_symlink_swap_race_through_mcp_never_reaches_alices_photo(
    world: World, photos: dict[str, bytes], shared_data: Path
) -> None:
    root = world.bob_root / "mcp"
    root.mkdir()
    swaps = stage(root, world.alice_files, photos["bob"])
    bobs = photo_id(photos["bob"])
    before = len(world.server.requests)
    outcomes: Counter[str] = Counter()
    timing: dict[str, float] = {}

    async def call(client: ClientSession, swap: Swap, limit: asyncio.Semaphore) -> None:
        async with limit:
            asked = await client.call_tool("ask_about_photo", {"photo": str(swap.asked), "question": "Who?"})
        if asked.is_error:
            (text,) = asked.content
            assert text.type == "text" and _refusal(text.text), (swap.label, text)
            assert asked.structured_content is None
            outcomes["outside" if OUTSIDE in text.text else "unreadable"] += 1
        else:
            structured = asked.structured_content or {}
            assert structured["photo"] == bobs, (swap.label, structured)
            assert structured["answer"] == ANSWER
            assert [c["name"] for c in structured["citations"]] == ["Kit Harington"]
            outcomes["answered"] += 1

    async def session() -> None:
        env = _env(world.base, shared_data, RCMU_USER="bob", RCMU_BACKEND="openai", RCMU_MODEL="m")
        env.update(RCMU_BASE_URL=world.server.url, RCMU_ALLOWED_ROOTS=str(world.bob_root))
        assert env["RCMU_HOME"] == str(world.home)
        with (world.base / "mcp-stderr.log").open("w") as errlog:
            async with stdio_session(env, world.base / "mcp-stdout.jsonl", errlog) as client:
                started = time.monotonic()
                limit = asyncio.Semaphore(3)  # a few calls in flight, as a busy client has them
                with swapping(swaps) as swapper:
                    await asyncio.gather(*(call(client, swaps[n % len(swaps)], limit) for n in range(208)))
                timing["calls"], timing["rounds"] = time.monotonic() - started, swapper.rounds

    asyncio.run(session())
    sent = world.server.requests[before:]
    assert len(sent) == outcomes["answered"] > 0, outcomes
    assert_model_saw_only_bobs_photo(sent, photos)
    assert outcomes["outside"] > 0, outcomes
    calls, rounds = sum(outcomes.values()), timing["rounds"]
    print(f"\nMCP race: {calls} calls in {timing['calls']:.1f} s, {rounds:.0f} swap rounds: {outcomes}")


# ---- 2. PostScript, EPS and PDF: refused, and Ghostscript never runs --------------------------------------

EPS_LOOP = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n{} loop\n%%EOF\n"
POSTSCRIPT = (
    b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 64 64\n%%Pages: 1\n%%EndComments\n"
    b"newpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n"
)
# DOS EPS: a binary header (magic, PostScript offset and length, no WMF or TIFF preview), then the EPS
DOS_EPS = struct.pack("<IIIIIIIH", 0xC6D3D0C5, 30, len(EPS_LOOP), 0, 0, 0, 0, 0xFFFF) + EPS_LOOP
PDF = (
    b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [3 0 R] /Count 1>> "
    b"endobj\n3 0 obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 64 64]>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
)
PAYLOADS = {"EPS with an endless loop": EPS_LOOP, "PostScript": POSTSCRIPT, "DOS EPS": DOS_EPS, "PDF": PDF}
GHOSTSCRIPT_FORMATS = ("EPS with an endless loop", "PostScript", "DOS EPS")  # what Pillow would hand to gs


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inline_forms(data: bytes) -> dict[str, Any]:
    """The inline forms a photo argument takes; the data URL and block claim PNG, as an attacker would."""
    return {
        "bytes": data,
        "base64": _b64(data),
        "data URL": f"data:image/png;base64,{_b64(data)}",
        "image block": {"type": "image", "base64": _b64(data), "mime_type": "image/png"},
    }


@dataclass(frozen=True)
class StandIn:
    path: str  # PATH with the stand-in first
    marker: Path  # written by every run of the stand-in

    def ran(self) -> str:
        return self.marker.read_text() if self.marker.exists() else ""


@pytest.fixture()
def stand_in_gs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """A `gs` first on PATH that notes each run (answering `--version` like Ghostscript), and Pillow
    made to look for Ghostscript afresh, so any route to it would run this one."""
    folder = tmp_path / "stand-in-bin"
    folder.mkdir()
    marker = tmp_path / "gs-ran.txt"
    script = folder / "gs"
    script.write_text(
        f'#!/bin/sh\necho "$$ $*" >> {shlex.quote(str(marker))}\n'
        '[ "$1" = "--version" ] && echo 10.05.0 && exit 0\nexit 1\n'
    )
    script.chmod(0o755)
    path = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    assert shutil.which("gs") == str(script)
    return StandIn(path, marker)


@pytest.mark.integration
@pytest.mark.parametrize("payload", GHOSTSCRIPT_FORMATS)
def test_the_stand_in_gs_is_what_pillow_would_run(stand_in_gs: StandIn, payload: str) -> None:
    """The control: Pillow unrestricted opens these as EPS and runs `gs` to load them — ours."""
    with Image.open(io.BytesIO(PAYLOADS[payload])) as img:
        assert img.format == "EPS"
        with pytest.raises(Exception):  # noqa: B017 - the stand-in fails; which error is Pillow's
            img.load()
    assert "--version" in stand_in_gs.ran()


def _one_line_refusal(text: str) -> bool:
    return "\n" not in text and NOT_A_PHOTO in text


@pytest.mark.unit
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_load_image_refuses_postscript_and_pdf_without_running_gs(
    stand_in_gs: StandIn, payload: str, tmp_path: Path
) -> None:
    data = PAYLOADS[payload]
    started = time.monotonic()
    for source in (data, tmp_path / "photo.jpg"):
        if isinstance(source, Path):
            source.write_bytes(data)  # named like a photo, from disk
        with pytest.raises(InvalidInputError) as raised:
            load_image(source)
        assert _one_line_refusal(str(raised.value)), raised.value
    assert time.monotonic() - started < 5
    assert not stand_in_gs.ran()


@pytest.fixture(scope="module")
def eps_assistant(tmp_path_factory: pytest.TempPathFactory, model: FakeServer) -> Assistant:
    home = tmp_path_factory.mktemp("eps-home")
    return Assistant(
        Settings(
            home=home,
            user="bob",
            backend="openai",
            base_url=model.url,
            model="m",
            api_key=SecretStr("sk-test"),
            object_detector=None,
            image_embedding_model=None,
        )
    )


def _photo_calls(photo: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("ask_about_photo", {"photo": photo, "question": "Who is this?"}),
        ("describe_photo", {"photo": photo}),
        ("remember", {"name": "Mallory", "info": "a stranger", "photos": [photo]}),
    ]


@pytest.mark.integration
def test_the_tools_refuse_postscript_and_pdf_without_running_gs(
    stand_in_gs: StandIn, eps_assistant: Assistant, model: FakeServer
) -> None:
    tools = {t.name: t for t in rcmu_tools(eps_assistant, user="bob")}
    before = len(model.requests)
    calls = 0
    for payload, data in PAYLOADS.items():
        for form, photo in inline_forms(data).items():
            for name, args in _photo_calls(photo):
                started = time.monotonic()
                message = _tool_call(tools[name], **args)
                assert time.monotonic() - started < 5, (payload, form, name)
                assert message.status == "error", (payload, form, name, message.content)
                assert _one_line_refusal(str(message.content)), (payload, form, name, message.content)
                calls += 1
    assert calls == 48
    assert len(model.requests) == before and not eps_assistant.entities(user="bob")
    assert not stand_in_gs.ran()


@pytest.mark.integration
def test_mcp_refuses_postscript_and_pdf_without_running_gs(
    stand_in_gs: StandIn, tmp_path: Path, shared_data: Path, model: FakeServer
) -> None:
    """Over stdio the server's PATH is the one in its env: the stand-in comes first there too."""
    before = len(model.requests)
    texts: list[str] = []

    async def session() -> None:
        env = _env(tmp_path, shared_data, RCMU_USER="bob", RCMU_BACKEND="openai", RCMU_MODEL="m")
        env.update(RCMU_BASE_URL=model.url, PATH=stand_in_gs.path)
        async with stdio_session(env, tmp_path / "stdout.jsonl") as client:
            for data in PAYLOADS.values():
                for form, photo in inline_forms(data).items():
                    if form in ("bytes", "image block"):
                        continue  # JSON carries text: a client sends base64 or a data URL
                    for name, args in _photo_calls(photo):
                        started = time.monotonic()
                        called = await client.call_tool(name, args)
                        assert time.monotonic() - started < 5, (name, form)
                        (text,) = called.content
                        assert called.is_error and text.type == "text", (name, form, text)
                        texts.append(text.text)

    asyncio.run(session())
    assert len(texts) == 24 and all(_one_line_refusal(t) for t in texts), texts
    assert len(model.requests) == before
    assert not stand_in_gs.ran()


def _graph_blocks(data: bytes) -> dict[str, dict[str, Any]]:
    """The image blocks a chat client may send, each holding `data` as base64."""
    return {
        "v1 base64 block": {"type": "image", "base64": _b64(data), "mime_type": "image/png"},
        "v0 base64 block": {"type": "image", "source_type": "base64", "data": _b64(data), "mime_type": "image/jpeg"},
        "image_url data URL": {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{_b64(data)}"}},
        "Anthropic source": {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": _b64(data)},
        },
    }


@pytest.mark.integration
def test_the_graph_refuses_postscript_and_pdf_without_running_gs(
    stand_in_gs: StandIn, eps_assistant: Assistant, model: FakeServer
) -> None:
    """`Assistant.ask` and `describe` with the bytes; the server graph's message input with a base64 image
    block in each form a chat client uses."""
    before = len(model.requests)
    graph = build_graph(Parts(eps_assistant.settings))  # as a server runs it
    refusals: list[str] = []
    for payload, data in PAYLOADS.items():
        with pytest.raises(InvalidInputError) as raised:
            eps_assistant.ask("Who is this?", data)
        refusals.append(str(raised.value))
        with pytest.raises(InvalidInputError) as raised:
            eps_assistant.describe(data)
        refusals.append(str(raised.value))
        for label, block in _graph_blocks(data).items():
            turn = HumanMessage(content=[{"type": "text", "text": "Who is this?"}, block])
            started = time.monotonic()
            with pytest.raises(InvalidInputError) as raised:
                graph.invoke({"messages": [turn]})
            assert time.monotonic() - started < 5, (payload, label)
            refusals.append(str(raised.value))
    assert len(refusals) == 24 and all(_one_line_refusal(r) for r in refusals), refusals
    assert len(model.requests) == before
    assert not stand_in_gs.ran()


@pytest.mark.integration
def test_a_regions_mask_is_decoded_without_running_gs(
    stand_in_gs: StandIn, eps_assistant: Assistant, model: FakeServer, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """A region's mask is decoded too: bytes from host code, through the photo decoders only. An EPS there
    once ran Ghostscript (found by this suite); a file named in the graph's `regions` input is not read at
    all (a mask as text must be COCO RLE)."""
    before = len(model.requests)
    graph = build_graph(Parts(eps_assistant.settings))  # as a server runs it
    masks = tmp_path / "mask.png"
    masks.write_bytes(EPS_LOOP)
    bob = {"type": "image", "base64": _b64(photos["bob"]), "mime_type": "image/jpeg"}
    turn = HumanMessage(content=[{"type": "text", "text": "Who is in <region1>?"}, bob])
    with pytest.raises(InvalidInputError) as raised:
        graph.invoke({"messages": [turn], "regions": [{"box": [0, 0, 64, 64], "mask": str(masks)}]})
    assert "not read as a file" in str(raised.value) and "\n" not in str(raised.value), raised.value
    with pytest.raises(ValueError, match="cannot read mask image"):  # pydantic's, around the InvalidInputError
        Region(box=(0, 0, 64, 64), category="person", mask=EPS_LOOP)  # type: ignore[arg-type]
    assert len(model.requests) == before
    assert not stand_in_gs.ran()
