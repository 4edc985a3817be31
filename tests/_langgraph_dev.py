"""A real `langgraph dev` serving the graph with the shipped bearer-token auth, and `langgraph-sdk` turns
against it: what tests/test_langgraph_server.py and tests/security/test_server_attacks.py share.

`start_langgraph_dev` is a generator for a module fixture (one server process per test module, on a free
loopback port); `run_turn` streams one run as a chat front end would.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

__all__ = ["NO_MODEL", "TOKENS", "RunFailed", "human", "image_block", "run_turn", "start_langgraph_dev"]

REPO = Path(__file__).resolve().parents[1]
NO_MODEL: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}
TOKENS = {"token-alice": "alice", "token-bob": "bob"}


class RunFailed(RuntimeError):
    """The run's `error` event; `data` is what the server sent (`{"error": ..., "message": ...}`)."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.data = data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_langgraph_dev(tmp: Path, home: Path, env: dict[str, str]) -> Iterator[str]:
    """`langgraph dev` with the shipped auth config (its paths made absolute, so the server runs outside the
    repository and writes nothing into it), until the test module ends; yields the server's URL."""
    shipped = (REPO / "examples" / "langgraph-auth.json").read_text()
    config = json.loads(shipped.replace('"./', f'"{REPO}/').replace('"."', f'"{REPO}"'))
    config.pop("env", None)
    assert config["auth"]["path"].endswith("rcmu_agent/server.py:auth")
    # LangGraph's UI bundler takes component paths inside the server's folder only: the repository's
    # ui/ is linked there, and the paths stay as shipped
    config["ui"] = json.loads(shipped)["ui"]
    (tmp / "ui").symlink_to(REPO / "ui", target_is_directory=True)
    (tmp / "langgraph.json").write_text(json.dumps(config))
    (tmp / "tokens.json").write_text(json.dumps(TOKENS))
    port = _free_port()
    full_env = {
        **os.environ,
        "RCMU_HOME": str(home),
        "RCMU_TOKENS_FILE": str(tmp / "tokens.json"),
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "LANGGRAPH_STRICT_MSGPACK": "false",  # the permissive default, which warns on unregistered classes
        **env,
    }
    langgraph = Path(sys.executable).with_name("langgraph")
    args = [str(langgraph), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        [*args, "--config", str(tmp / "langgraph.json")],
        cwd=tmp,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the UI bundler (npx → node) ends with it, below
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"langgraph dev exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("langgraph dev did not start within 120 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        # the bundler's watcher outlives a terminated `langgraph dev` (npx does not pass the signal on)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        text = (tmp / "server.log").read_text()
        assert "Blocking call" not in text and "BlockingError" not in text, text[-3000:]
        assert "unregistered type" not in text, text[-3000:]


def image_block(path: Path) -> dict[str, Any]:
    """The photo at `path` as an inline base64 image block, as a chat front end sends it."""
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "image", "base64": data, "mime_type": "image/jpeg"}


def human(text: str, image: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}, *([image] if image else [])]}


async def run_turn(
    url: str,
    token: str,
    thread: str | None,
    turn: dict[str, Any] | None,
    context: dict[str, Any] | None = None,
    *,
    command: dict[str, Any] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Stream one run (a turn, or with `turn=None` the graph resumed from the thread's checkpoint, or a
    `command`): the answer node's token chunks, and the final state. An error event raises `RunFailed`."""
    from langgraph_sdk import get_client

    client = get_client(url=url, headers={"Authorization": f"Bearer {token}"})
    if thread is None:
        thread = (await client.threads.create())["thread_id"]
    chunks: list[str] = []
    values: dict[str, Any] = {}
    options: dict[str, Any] = {"input": turn, "command": command, "context": context}
    async for part in client.runs.stream(thread, "rcmu", stream_mode=["messages-tuple", "values"], **options):
        if part.event == "error":
            raise RunFailed(part.data)
        if part.event == "messages":
            message, meta = part.data
            if meta.get("langgraph_node") == "answer" and message.get("content"):
                chunks.append(message["content"])
        elif part.event == "values":
            values = part.data
    values["thread_id"] = thread
    return chunks, values
