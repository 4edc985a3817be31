"""`python -m rcmu_agent.testing` stands in for a model server at a known address (`--host`, `--port`)."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.integration  # a server process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_fake_model_server_listens_where_it_is_told() -> None:
    port = _free_port()
    args = [sys.executable, "-m", "rcmu_agent.testing", "--host", "127.0.0.1", "--port", str(port), "--text", "hi [1]"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"http://127.0.0.1:{port}/v1"
        body = {"model": "m", "messages": [{"role": "user", "content": "Who?"}]}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10).json()
        assert reply["choices"][0]["message"]["content"] == "hi [1]"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
