"""`rcmu mcp` as MCP clients nobody here wrote meet it (issue 21): the official SDK's client over stdio and
streamable HTTP, and MCP Inspector's CLI installed from npm.

- A caller sending missing, extra or wrongly typed arguments gets one line, `problem — fix`, naming its
  own argument paths and the tool's arguments, never the server's classes or pydantic's union members.
- Fixes name the tool to call, not a CLI command.
- Over HTTP a 12 MP phone photo of 6 MB is sent inline (8 MB of base64, over the SDK's default 4 MiB
  request limit) and answered with the people in it; a request over the server's own limit is a
  JSON-RPC error saying so.
- A missing or bad token gets a plain 401 with `WWW-Authenticate: Bearer` and no OAuth metadata, which
  the SDK's client and MCP Inspector's CLI report as what it is.
- Every capability the server advertises has something in it: its prompts render a request to call the
  right tool; `serverInfo.version` is the package's.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from PIL import Image

from rcmu_agent.testing import Reply, serve
from tests.tools.test_mcp import BIDEN_FACE, OBAMA_FACE, REPLY, _env, _http_server, http_session, stdio_session

pytestmark = pytest.mark.integration  # MCP servers as subprocesses, MCP Inspector through npx

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
NODE = "node@22.19.0"  # the oldest Node.js that Inspector 2.12 supports (`engines`)
PHONE_WIDTH = 4512  # two_people.jpg (1126 px wide) scaled to a 12 MP phone photo
# what no caller should ever read: the server's class names, pydantic's wording, union members, CLI commands
INTERNALS = ("Arguments", "pydantic", "validation error", "photo.bytes", "dict[str", "RegionInput", "Error executing")

WRONG_ARGUMENTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("ask_about_photo", {"question": "Who?"}, ["`photo` is missing"]),
    ("ask_about_photo", {"photo": 5, "question": "Who?"}, ["`photo` should be a string, not a number"]),
    ("ask_about_photo", {"photo": "a.jpg", "question": "Who?", "zoom": 2}, ["`zoom` is not an argument"]),
    (
        "ask_about_photo",
        {"photo": "a.jpg", "question": "Who?", "regions": [{"box": [1, 2]}, {"box": [1, 2, 3, "x"], "size": 1}]},
        [
            "`regions[0].box` should have at least 4 items, not 2",
            "`regions[1].box[3]` should be a number, not a string",
            "`regions[1].size` is not allowed",
        ],
    ),
    ("describe_photo", {"photo": "a.jpg", "regions": ["left"]}, ["`regions` is not an argument of describe_photo"]),
    ("ask_about_photo", {"photo": "a.jpg", "question": "Who?", "regions": ["left"]}, ["`regions[0]` should be"]),
    ("remember", {"name": "Bella", "photos": "bella.jpg"}, ["`photos` should be a list, not a string"]),
    ("search_photos", {"since": "last summer", "limit": 0}, ["`since` should be a date as YYYY-MM-DD", "`limit`"]),
    ("recall", {}, ["`question` is missing"]),
]


def _one_line(result: Any) -> str:
    """The text of a tool error, checked to be one `problem — fix` line without the server's internals."""
    (content,) = result.content
    assert result.is_error and content.type == "text", result
    text = str(content.text)
    assert "\n" not in text and text.count(" — ") == 1, text
    assert not [word for word in INTERNALS if word in text], text
    return text


async def _wrong_arguments_are_one_line_errors(client: ClientSession) -> None:
    for tool, arguments, expected in WRONG_ARGUMENTS:
        text = _one_line(await client.call_tool(tool, arguments))
        problem, fix = text.split(" — ")
        assert all(e in problem for e in expected), (arguments, text)
        assert fix.startswith(f"call {tool} again with"), text
    text = _one_line(await client.call_tool("ask_about_photo", {"question": "Who?"}))
    assert text.endswith("photo (string, required), question (string, required), regions (list)"), text


def test_stdio_errors_capabilities_and_prompts(tmp_path: Path, shared_data: Path) -> None:
    async def session() -> None:
        env = _env(tmp_path, shared_data, RCMU_USER="alice")  # no model: nothing here reaches one
        async with stdio_session(env, tmp_path / "stdout.jsonl") as client:
            info, capabilities = client.server_info, client.server_capabilities
            assert info is not None and info.version == version("rcmu-agent") != ""
            assert capabilities is not None and capabilities.logging is None and capabilities.completions is None
            # each capability offered has something in it
            assert capabilities.tools and len((await client.list_tools()).tools) == 7
            assert capabilities.resources and (await client.list_resource_templates()).resource_templates
            assert capabilities.prompts
            prompts = {p.name: p for p in (await client.list_prompts()).prompts}
            assert set(prompts) == {"who_is_in_photo", "teach", "find_photos"}
            assert all(p.description and all(a.description for a in p.arguments or []) for p in prompts.values())

            await _wrong_arguments_are_one_line_errors(client)

            # fixes name tools, not CLI commands
            forgot = _one_line(await client.call_tool("forget", {"name": "Nobody"}))
            assert forgot.endswith("— call list_people for the names and ids") and "rcmu" not in forgot
            unknown = _one_line(await client.call_tool("who_is_this", {"photo": "a.jpg"}))
            assert unknown.startswith("there is no tool 'who_is_this' — call one of: ask_about_photo,"), unknown
            searched = await client.call_tool("search_photos", {"text": "a beach"})  # nothing indexed
            assert "rcmu index" not in json.dumps([c.model_dump() for c in searched.content])

            photo = str(shared_data / "faces" / "scenes" / "two_people.jpg")
            asked = await client.get_prompt("who_is_in_photo", {"photo": photo, "question": 'Who is "left"?'})
            (message,) = asked.messages
            text = message.content.text  # type: ignore[union-attr]
            assert message.role == "user" and "ask_about_photo" in text
            assert f"photo = {json.dumps(photo)}" in text and 'question = "Who is \\"left\\"?"' in text
            taught = await client.get_prompt("teach", {"name": "Bella", "photo": photo, "info": "our dog"})
            assert "remember" in taught.messages[0].content.text  # type: ignore[union-attr]

    asyncio.run(session())
    lines = (tmp_path / "stdout.jsonl").read_text().splitlines()
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in lines)


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A 12 MP JPEG of about 6 MB, as a phone takes it: two_people.jpg scaled up, with sensor-like noise
    (an upscaled photo alone compresses to half that)."""
    with Image.open(shared_data / "faces" / "scenes" / "two_people.jpg") as small:
        scale = PHONE_WIDTH / small.width
        big = np.asarray(small.convert("RGB").resize((PHONE_WIDTH, round(small.height * scale)), Image.LANCZOS))
    noise = np.random.default_rng(0).normal(0, 10, big.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=95)
    path = tmp_path_factory.mktemp("phone") / "IMG_0001.jpg"
    path.write_bytes(buffer.getvalue())
    assert 6_000_000 <= path.stat().st_size < 7_000_000 and big.shape[0] * big.shape[1] > 11_900_000
    return path


@pytest.fixture()
def model() -> Iterator[str]:
    with serve() as fake:
        fake.default = Reply(text=REPLY)
        yield fake.url


def test_http_answers_a_6_mb_inline_photo(
    tmp_path: Path, shared_data: Path, faces_dir: Path, phone_photo: Path, model: str
) -> None:
    scale = PHONE_WIDTH / 1126
    inline = base64.b64encode(phone_photo.read_bytes()).decode()
    assert len(inline) > 8_000_000 > 4 * 2**20  # twice the SDK's default request limit

    async def run(url: str) -> float:
        async with http_session(url, "alice-token") as alice:
            await _wrong_arguments_are_one_line_errors(alice)
            for name, photo in [("Barack Obama", "obama_obama.jpg"), ("Joe Biden", "biden_biden.jpg")]:
                photos = [str(faces_dir / "reference" / photo)]
                taught = await alice.call_tool("remember", {"name": name, "info": f"{name} info", "photos": photos})
                assert not taught.is_error, taught.content
            started = time.monotonic()
            asked = await alice.call_tool("ask_about_photo", {"photo": inline, "question": "Who is on the left?"})
            took = time.monotonic() - started
            assert not asked.is_error, asked.content
            structured = asked.structured_content
            assert structured is not None and structured["answer"] == REPLY
            cited = {c["name"]: c["box"] for c in structured["citations"]}
            assert set(cited) == {"Barack Obama", "Joe Biden"}
            for name, face in [("Barack Obama", OBAMA_FACE), ("Joe Biden", BIDEN_FACE)]:
                # in the big photo's own pixels: on the small photo's face, scaled (dlib boxes it a little
                # differently at another scale)
                x1, y1, x2, y2 = (v * scale for v in face)
                middle = ((cited[name][0] + cited[name][2]) / 2, (cited[name][1] + cited[name][3]) / 2)
                assert x1 < middle[0] < x2 and y1 < middle[1] < y2, (name, cited[name])
                assert _iou(cited[name], [x1, y1, x2, y2]) > 0.6, (name, cited[name])
            text, image = asked.content
            assert text.type == "text" and "[1] = Barack Obama" in text.text
            assert image.type == "image" and len(image.data) < 1_000_000  # the SDK client's event limit
            return took

    took = asyncio.run(_with_server(run, tmp_path, shared_data, model))
    print(f"6 MB inline photo over HTTP, ask_about_photo answered in {took:.1f} s")


def test_http_request_over_the_photo_limit_is_one_line(
    tmp_path: Path, shared_data: Path, phone_photo: Path, model: str
) -> None:
    """With RCMU_MAX_IMAGE_BYTES at 7 MB, one phone photo fits; two in one call do not, and the caller
    is told why, with the limit, instead of the SDK's "Server returned an error response"."""
    inline = base64.b64encode(phone_photo.read_bytes()).decode()

    async def run(url: str) -> None:
        async with http_session(url, "alice-token") as alice:
            with pytest.raises(MCPError) as refused:
                await alice.call_tool("remember", {"name": "Barack Obama", "photos": [inline, inline]})
            message = str(refused.value)
            assert message.startswith("the request is over this server's 10 MiB limit (one photo of up to 7 MiB")
            assert message.endswith("— send a smaller photo, or one photo per call") and "\n" not in message
            one = await alice.call_tool("describe_photo", {"photo": inline})  # the same photo alone fits
            assert not one.is_error, one.content

    asyncio.run(_with_server(run, tmp_path, shared_data, model, RCMU_MAX_IMAGE_BYTES=str(7 * 2**20)))


def _iou(a: list[float], b: list[float]) -> float:
    inner = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inner / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inner)


async def _with_server(run: Any, tmp_path: Path, shared_data: Path, model: str, **env: str) -> Any:
    servers = _http_server(tmp_path, shared_data, model, **env)
    url = next(servers)
    try:
        return await run(url)
    finally:
        servers.close()


def test_bad_token_is_a_plain_401_that_clients_report(tmp_path: Path, shared_data: Path, model: str) -> None:
    servers = _http_server(tmp_path, shared_data, model)
    url = next(servers)
    try:
        hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        missing = httpx.post(url, json=hello, timeout=10)
        bad = httpx.post(url, json=hello, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert missing.status_code == bad.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="rcmu"'  # RFC 6750: no error without a token
        assert bad.headers["www-authenticate"].startswith('Bearer realm="rcmu", error="invalid_token"')
        assert "resource_metadata" not in bad.headers["www-authenticate"]
        assert "no bearer token" in missing.json()["error"]["message"]
        origin = url.removesuffix("/mcp")
        for advertised in ("oauth-protected-resource/mcp", "oauth-protected-resource", "oauth-authorization-server"):
            assert httpx.get(f"{origin}/.well-known/{advertised}", timeout=10).status_code == 404

        async def sdk_client() -> None:
            with pytest.raises(BaseExceptionGroup) as refused:  # from inside the client's task groups
                async with http_session(url, "nope"):
                    pass
            said = "^the bearer token is not valid — send one the server was given"
            assert refused.group_contains(MCPError, match=said, depth=None), refused.value

        asyncio.run(sdk_client())

        refused = _inspector(tmp_path, url, "Bearer nope")
        assert refused.returncode == 3, refused  # Inspector's "auth_required"
        reported = json.loads(refused.stderr.strip().splitlines()[-1])["error"]
        assert reported["code"] == "auth_required" and "the bearer token is not valid" in reported["message"]
        assert "OAuth" not in reported["message"] and "Registration" not in reported["message"]
        listed = _inspector(tmp_path, url, "Bearer alice-token")
        assert listed.returncode == 0, listed
        assert len(json.loads(listed.stdout)["tools"]) == 7
    finally:
        servers.close()


def _inspector(tmp_path: Path, url: str, authorization: str) -> subprocess.CompletedProcess[str]:
    """`npx @modelcontextprotocol/inspector --cli` as its README gives it, installed from npm into the
    pytest cache on first use (with its Node.js, ~1 min). `--stored-auth-only` is its mode for runs with
    no person at a terminal: report an authentication failure instead of opening a browser for OAuth."""
    npx = shutil.which("npx")
    assert npx, "MCP Inspector runs through npx: install Node.js and npm (Debian: apt-get install nodejs npm)"
    cache = Path(__file__).resolve().parents[2] / ".pytest_cache" / "npm"
    home = tmp_path / "inspector-home"  # its catalog of servers goes to ~/.mcp-inspector
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "npm_config_cache": str(cache),
        "npm_config_update_notifier": "false",
        "MCP_INSPECTOR_SECRET_STORE": "memory",
    }
    inspector = ["mcp-inspector", "--cli", url, "--transport", "http", "--stored-auth-only"]
    inspector += ["--header", f"Authorization: {authorization}", "--method", "tools/list"]
    # with the Node.js its package asks for (from npm too), whatever the system's is
    command = [npx, "--yes", "-p", NODE, "-p", INSPECTOR, "-c", shlex.join(inspector)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
