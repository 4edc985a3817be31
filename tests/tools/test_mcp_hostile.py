"""The hostile-path matrix of the tools' security suite, through `rcmu mcp` over stdio: every path a
model might write is refused with the same words as the LangChain tools give, as a tool error, and no
piece of the secret file reaches the client, the protocol stream or the server's log."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent.testing import Reply, serve
from tests.security.conftest import SECRET, allowed, outside  # noqa: F401  (fixtures, shared with that suite)
from tests.security.test_hostile import _hostile_paths, assert_no_secret
from tests.tools.test_mcp import _env, stdio_session

pytestmark = pytest.mark.integration  # an MCP server as a subprocess


def _json_safe(photo: Any) -> Any:
    """What a client can send: a `Path` goes as its string, image blocks as they are."""
    return os.fspath(photo) if isinstance(photo, os.PathLike) else photo


def test_ask_about_photo_over_mcp_refuses_every_hostile_path(
    tmp_path: Path,
    shared_data: Path,
    allowed: Path,  # noqa: F811
    outside: Path,  # noqa: F811
) -> None:
    matrix = _hostile_paths(outside, allowed)
    outputs: list[Any] = []

    async def session(url: str) -> None:
        env = _env(tmp_path, shared_data, RCMU_USER="bob", RCMU_BACKEND="openai", RCMU_BASE_URL=url, RCMU_MODEL="m")
        env["RCMU_ALLOWED_ROOTS"] = str(allowed)
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with stdio_session(env, tmp_path / "stdout.jsonl", errlog) as client:
                for label, (photo, refusal) in matrix.items():
                    asked = await client.call_tool(
                        "ask_about_photo", {"photo": _json_safe(photo), "question": "Who is this?"}
                    )
                    (text,) = asked.content
                    assert asked.is_error, (label, text)
                    assert text.type == "text" and refusal in text.text, (label, text.text)
                    assert "\n" not in text.text and asked.structured_content is None, label
                    outputs.append(text.text)

    with serve() as model:
        model.default = Reply(text="Someone [1] is here.")
        asyncio.run(session(model.url))
        assert not model.requests  # nothing reached the model
    assert len(outputs) == len(matrix)
    stdout = (tmp_path / "stdout.jsonl").read_text()
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in stdout.splitlines())
    assert_no_secret(*outputs, stdout, (tmp_path / "stderr.log").read_text())
    assert SECRET not in stdout
