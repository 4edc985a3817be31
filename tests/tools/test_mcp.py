"""`rcmu mcp` as a real subprocess, driven by the official MCP SDK's client over stdio and streamable HTTP.

Answers come from the loopback OpenAI-compatible server (a fixed reply, so citations can be checked)
and, once, from the tiny Qwen2-VL through transformers. Photos are read from the shared data folder,
which is the allowed root.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TextIO

import httpx
import numpy as np
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from PIL import Image

from rcmu_agent.testing import FakeServer, Reply, build_tiny_qwen2vl, serve

pytestmark = pytest.mark.integration  # MCP servers as subprocesses

REPLY = "Barack Obama [1] is on the left; Joe Biden [2] is on the right."
OBAMA_FACE, BIDEN_FACE = (253, 47, 409, 203), (778, 57, 965, 243)
RCMU = str(Path(sys.executable).with_name("rcmu"))


def _env(home: Path, shared_data: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "RCMU_HOME": str(home / "rcmu"),
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "RCMU_ALLOWED_ROOTS": str(shared_data),
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        **extra,
    }


@asynccontextmanager
async def stdio_session(
    env: dict[str, str], stdout_copy: Path, errlog: TextIO = sys.stderr
) -> AsyncIterator[ClientSession]:
    """`rcmu mcp` over stdio, its stdout also copied to a file so the test can check every byte of it
    (and its stderr to `errlog`)."""
    command = f"{RCMU} mcp | tee {stdout_copy}"
    params = StdioServerParameters(command="sh", args=["-c", command], env=env)
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def _decoded(data: str, mime: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        assert mime == f"image/{str(image.format).lower()}"
        return np.asarray(image.convert("RGB")).astype(int)


def _drawn_on(drawn: np.ndarray, original: np.ndarray, box: tuple[int, ...], noise: float = 0.0) -> bool:
    """The box's outline differs from the photo; the middle of the face does not (beyond `noise`,
    the mean error a lossy encoding adds)."""
    x1, y1, x2, y2 = box
    edge = np.abs(drawn[y1 - 1 : y1 + 2, x1:x2] - original[y1 - 1 : y1 + 2, x1:x2]).mean()
    middle = np.abs(drawn[y1 + 40 : y2 - 40, x1 + 40 : x2 - 40] - original[y1 + 40 : y2 - 40, x1 + 40 : x2 - 40])
    return bool(edge > 10 * (noise + 1) and middle.mean() < noise + 1.0)


def test_stdio_tools_answers_images_errors_and_resources(tmp_path: Path, shared_data: Path, faces_dir: Path) -> None:
    reference, scene = faces_dir / "reference", faces_dir / "scenes" / "two_people.jpg"
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(scene.read_bytes()[:3000])

    async def session(url: str) -> None:
        env = _env(tmp_path, shared_data, RCMU_USER="alice", RCMU_BACKEND="openai", RCMU_BASE_URL=url, RCMU_MODEL="m")
        env["RCMU_ALLOWED_ROOTS"] = os.pathsep.join([str(shared_data), str(tmp_path)])
        async with stdio_session(env, tmp_path / "stdout.jsonl") as client:
            info = client.server_info
            assert info is not None and info.name == "rcmu" and info.version == version("rcmu-agent") != ""
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {
                "ask_about_photo",
                "describe_photo",
                "remember",
                "forget",
                "list_people",
                "recall",
                "search_photos",
            }
            for tool in tools.values():
                assert tool.description and tool.output_schema and "user" not in tool.input_schema["properties"]
                assert all(p.get("description") for p in tool.input_schema["properties"].values())
            assert tools["ask_about_photo"].input_schema["required"] == ["photo", "question"]

            for name, photo in [("Barack Obama", "obama_obama.jpg"), ("Joe Biden", "biden_biden.jpg")]:
                taught = await client.call_tool(
                    "remember", {"name": name, "info": f"{name} info", "photos": [str(reference / photo)]}
                )
                assert not taught.is_error and taught.structured_content["entity"]["name"] == name
                assert str(tmp_path) not in json.dumps(taught.structured_content)  # not where its copies are kept

            progress: list[tuple[float, float | None, str | None]] = []

            async def heard(done: float, total: float | None, message: str | None) -> None:
                progress.append((done, total, message))

            question = {"photo": str(scene), "question": "Who is on the left?"}
            asked = await client.call_tool("ask_about_photo", question, progress_callback=heard)
            assert not asked.is_error
            assert progress[0] == (0, None, "ask_about_photo started")
            assert progress[-1][1:] == (progress[-1][0], "ask_about_photo done")  # the total, known at the end
            assert [p[0] for p in progress] == list(range(len(progress)))  # only grows, as MCP asks
            structured = asked.structured_content
            assert structured["answer"] == REPLY
            cited = {c["name"]: tuple(round(v) for v in c["box"]) for c in structured["citations"]}
            assert cited == {"Barack Obama": OBAMA_FACE, "Joe Biden": BIDEN_FACE}
            assert "image" not in structured  # the server's paths stay on the server
            text, image = asked.content
            assert text.type == "text" and "[1] = Barack Obama" in text.text
            original = np.asarray(Image.open(scene).convert("RGB")).astype(int)
            drawn = _decoded(image.data, image.mime_type)
            assert image.mime_type == "image/jpeg"  # as PNG it would not fit an HTTP client's 1 MiB event
            assert drawn.shape == original.shape and len(image.data) < 1_000_000
            noise = 3.0  # JPEG's
            assert _drawn_on(drawn, original, OBAMA_FACE, noise) and _drawn_on(drawn, original, BIDEN_FACE, noise)

            slow_answer.set()  # the model now takes 2.5 s: the client hears the call is still working
            progress.clear()
            await client.call_tool("recall", {"question": "Who is Joe Biden?"}, progress_callback=heard)
            working = [m for _, _, m in progress if m and m.startswith("recall working (")]
            assert working and working[0] == "recall working (1 s)", progress

            bad = await client.call_tool("ask_about_photo", {"photo": str(corrupt), "question": "Who?"})
            assert bad.is_error and "corrupt.jpg" in bad.content[0].text and " — " in bad.content[0].text
            outside = await client.call_tool("ask_about_photo", {"photo": "/etc/passwd", "question": "Who?"})
            assert outside.is_error and "outside the allowed folders" in outside.content[0].text
            assert "root:" not in outside.content[0].text

            people = (await client.call_tool("list_people", {})).structured_content["people"]
            assert sorted(p["name"] for p in people) == ["Barack Obama", "Joe Biden"]
            listed = {r.name: str(r.uri) for r in (await client.list_resources()).resources}
            read = await client.read_resource(listed["Barack Obama"])
            person = json.loads(read.contents[0].text)
            assert person["name"] == "Barack Obama" and person["thumbnails"][0].startswith("data:image/jpeg;base64,")

    slow_answer = threading.Event()
    with serve(FakeServer(responder=lambda _: Reply(text=REPLY, delay=2.5 if slow_answer.is_set() else 0))) as fake:
        asyncio.run(session(fake.url))
    lines = (tmp_path / "stdout.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["jsonrpc"] == "2.0" for line in lines)  # nothing but the protocol


def test_stdio_with_the_tiny_qwen2vl(tmp_path: Path, shared_data: Path, faces_dir: Path) -> None:
    """The default backend: the first call reports the model load as a progress step, and the answer's
    regions are Obama's and Biden's faces, left and right, in the photo's pixels."""
    model = build_tiny_qwen2vl(tmp_path / "qwen")

    async def session() -> None:
        env = _env(tmp_path, shared_data, RCMU_USER="alice", RCMU_MODEL=str(model), RCMU_MAX_NEW_TOKENS="8")
        async with stdio_session(env, tmp_path / "stdout.jsonl") as client:
            for name, photo in [("Barack Obama", "obama_obama.jpg"), ("Joe Biden", "biden_biden.jpg")]:
                photos = [str(faces_dir / "reference" / photo)]
                taught = await client.call_tool("remember", {"name": name, "info": f"{name} info", "photos": photos})
                assert not taught.is_error, taught.content
            scene = str(faces_dir / "scenes" / "two_people.jpg")
            heard: list[str | None] = []

            async def progress(done: float, total: float | None, message: str | None) -> None:
                heard.append(message)

            question = {"photo": scene, "question": "Who is on the left?"}
            asked = await client.call_tool("ask_about_photo", question, progress_callback=progress)
            assert not asked.is_error, asked.content
            assert "loading the vision-language model (first call only)" in heard
            regions = {r["name"]: tuple(round(v) for v in r["box"]) for r in asked.structured_content["regions"]}
            assert regions == {"Barack Obama": OBAMA_FACE, "Joe Biden": BIDEN_FACE}  # Obama left, Biden right
            assert isinstance(asked.structured_content["answer"], str)  # the tiny model's words are random
            assert [c.type for c in asked.content] == ["text", "image"]
            heard.clear()
            await client.call_tool("describe_photo", {"photo": scene}, progress_callback=progress)
            assert not [m for m in heard if m and "loading" in m]  # loaded once

    asyncio.run(session())
    lines = (tmp_path / "stdout.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["jsonrpc"] == "2.0" for line in lines)


@pytest.fixture()
def http_server(tmp_path: Path, shared_data: Path) -> Iterator[str]:
    with serve() as fake:
        fake.default = Reply(text="I cannot tell from the information given.")
        yield from _http_server(tmp_path, shared_data, fake.url)


def _http_server(
    tmp_path: Path, shared_data: Path, model_url: str, auth: list[str] | None = None, **extra_env: str
) -> Iterator[str]:
    """`rcmu mcp --http` on a free port; `auth` defaults to a tokens file for alice and bob."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if auth is None:
        tokens = tmp_path / "tokens.json"
        tokens.write_text(json.dumps({"alice-token": "alice", "bob-token": "bob"}))
        auth = ["--tokens-file", str(tokens)]
    env = _env(tmp_path, shared_data, RCMU_BACKEND="openai", RCMU_BASE_URL=model_url, RCMU_MODEL="m", **extra_env)
    args = [RCMU, "mcp", "--http", f"127.0.0.1:{port}", *auth]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@asynccontextmanager
async def http_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_http_needs_a_token_and_keeps_users_apart(http_server: str, faces_dir: Path) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert httpx.post(http_server, json=hello, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(http_server, json=hello, headers=wrong, timeout=10).status_code == 401

    async def run() -> None:
        photo = str(faces_dir / "reference" / "obama_obama.jpg")
        async with http_session(http_server, "alice-token") as alice:
            taught = await alice.call_tool(
                "remember", {"name": "Barack Obama", "info": "Alice's uncle", "photos": [photo]}
            )
            assert not taught.is_error, taught.content
            uri = next(str(r.uri) for r in (await alice.list_resources()).resources if r.name == "Barack Obama")
            assert "Alice's uncle" in (await alice.read_resource(uri)).contents[0].text
        async with http_session(http_server, "bob-token") as bob:
            assert (await bob.call_tool("list_people", {})).structured_content == {"people": []}
            assert not [r for r in (await bob.list_resources()).resources if r.name == "Barack Obama"]
            with pytest.raises(Exception, match="no person"):
                await bob.read_resource(uri)
            recalled = await bob.call_tool("recall", {"question": "Who is Barack Obama?"})
            assert not recalled.is_error and recalled.structured_content["citations"] == []
            assert "Alice's uncle" not in json.dumps(recalled.structured_content)
            forgot = await bob.call_tool("forget", {"name": "Barack Obama"})
            assert forgot.is_error  # not his to forget
        async with http_session(http_server, "alice-token") as alice:
            people = (await alice.call_tool("list_people", {})).structured_content["people"]
            assert [p["name"] for p in people] == ["Barack Obama"]

    asyncio.run(run())


def test_stdio_reads_photos_inside_the_clients_roots(tmp_path: Path, shared_data: Path, faces_dir: Path) -> None:
    """A client that declares roots decides what its local server may read; RCMU_ALLOWED_ROOTS otherwise."""
    import mcp_types as types

    mine = tmp_path / "my-photos"
    mine.mkdir()
    (mine / "obama.jpg").write_bytes((faces_dir / "reference" / "obama_obama.jpg").read_bytes())

    async def roots(context: object) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=mine.as_uri(), name="my photos")])  # type: ignore[arg-type]

    async def session() -> None:
        env = _env(tmp_path, shared_data, RCMU_USER="alice")  # RCMU_ALLOWED_ROOTS is the shared data, not `mine`
        params = StdioServerParameters(command=RCMU, args=["mcp"], env=env)
        async with stdio_client(params) as (read, write), ClientSession(read, write, list_roots_callback=roots) as c:
            await c.initialize()
            inside = await c.call_tool(
                "remember", {"name": "Barack Obama", "info": "44th", "photos": [str(mine / "obama.jpg")]}
            )
            assert not inside.is_error, inside.content
            elsewhere = str(faces_dir / "reference" / "biden_biden.jpg")  # allowed by the setting, not the client
            outside = await c.call_tool("remember", {"name": "Joe Biden", "info": "46th", "photos": [elsewhere]})
            assert outside.is_error and "outside the allowed folders" in outside.content[0].text

    asyncio.run(session())


def test_previews_are_png_when_small_and_jpeg_within_the_budget_when_not() -> None:
    """An HTTP client of the official SDK drops any event over 1 MiB: a preview never gets near it."""
    from rcmu_agent.tools.mcp.server import _encoded

    small = Image.new("RGB", (200, 100), (30, 60, 90))
    data, mime = _encoded(small)
    assert mime == "image/png" and (_decoded(data, mime) == np.asarray(small)).all()  # exact pixels
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1600, 1600, 3), dtype=np.uint8))
    data, mime = _encoded(noisy)
    assert mime == "image/jpeg" and len(data) <= 700_000 and _decoded(data, mime).shape[0] < 1600


def test_http_remember_teaches_a_face_from_a_region_of_a_group_photo(http_server: str, faces_dir: Path) -> None:
    """Issue 23 over MCP: a host model asks about a group photo, is told who [1] is, and teaches him from
    that region; the next photo of him names him. Bad regions get one-line errors, and a token only ever
    teaches its own user's memory."""
    scene, later = str(faces_dir / "scenes" / "two_people.jpg"), str(faces_dir / "scenes" / "obama1.jpg")

    def refused(result: object) -> str:
        (text,) = result.content  # type: ignore[attr-defined]
        assert result.is_error and result.structured_content is None  # type: ignore[attr-defined]
        assert text.type == "text" and "\n" not in text.text and " — " in text.text
        return str(text.text)

    async def run() -> None:
        async with http_session(http_server, "alice-token") as alice:
            tools = {t.name: t for t in (await alice.list_tools()).tools}
            assert "group photo, give that one photo and `region`: '[n]'" in str(tools["remember"].description)
            assert "region" in tools["remember"].input_schema["properties"]
            assert "call `remember` with this photo and region '[n]'" in str(tools["ask_about_photo"].description)

            first = await alice.call_tool("ask_about_photo", {"photo": scene, "question": "Who is here?"})
            shown = {
                r["index"]: (r["name"], tuple(round(v) for v in r["box"])) for r in first.structured_content["regions"]
            }
            assert shown == {1: (None, OBAMA_FACE), 2: (None, BIDEN_FACE)}  # nobody known, numbered anyway
            assert f"[1] = an unrecognised person at {OBAMA_FACE}".replace(" ", "") in first.content[0].text.replace(
                " ", ""
            )

            args = {"name": "Barack Obama", "info": "the 44th president", "photos": [scene]}
            taught = await alice.call_tool("remember", {**args, "region": "[1]"})
            assert not taught.is_error, taught.content
            assert taught.structured_content["entity"]["photos"] == 1 and taught.structured_content["created"]

            asked = await alice.call_tool("ask_about_photo", {"photo": later, "question": "Who is this?"})
            assert [r["name"] for r in asked.structured_content["regions"]] == ["Barack Obama"]
            assert "[1] = Barack Obama (person)" in asked.content[0].text

            sky = await alice.call_tool("remember", {**args, "name": "Kit", "region": [0, 300, 200, 460]})
            assert refused(sky).startswith("no face in the region, so it cannot be remembered as a person — ")
            seven = await alice.call_tool("remember", {**args, "name": "Kit", "region": "[7]"})
            assert refused(seven).startswith("there is no region [7]: ")  # [1] is him now, [2] the unknown
            short = await alice.call_tool("remember", {**args, "name": "Kit", "region": [1, 2]})
            assert refused(short) == "a box has 4 numbers, got 2 — give pixel corners x1,y1,x2,y2"
            no_photo = await alice.call_tool("remember", {"name": "Kit", "info": "x", "region": "[1]"})
            assert "one photo" in refused(no_photo)

        async with http_session(http_server, "bob-token") as bob:
            named = await bob.call_tool("remember", {**args, "name": "Mallory", "user": "alice", "region": "[1]"})
            assert refused(named).startswith("remember got invalid arguments: `user` is not an argument of remember")
            box = [740, 20, 1000, 300]  # Biden's face, in bob's own memory
            mine = await bob.call_tool("remember", {**args, "name": "Joe Biden", "info": "bob's", "region": box})
            assert not mine.is_error, mine.content
            people = (await bob.call_tool("list_people", {})).structured_content["people"]
            assert [p["name"] for p in people] == ["Joe Biden"]
        async with http_session(http_server, "alice-token") as alice:
            people = (await alice.call_tool("list_people", {})).structured_content["people"]
            assert [(p["name"], p["info"], p["photos"]) for p in people] == [("Barack Obama", "the 44th president", 1)]

    asyncio.run(run())
