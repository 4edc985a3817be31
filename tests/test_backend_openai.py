"""The OpenAI-compatible backend over real HTTP, against a scripted server on 127.0.0.1.

Nothing is mocked between the backend and the socket: the `openai` SDK builds and sends the
request, the server below records exactly what arrived, and answers as vLLM or OpenAI would.
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from rcmu_agent.backends import load_backend
from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM
from rcmu_agent.errors import BackendError
from rcmu_agent.images import load_image
from rcmu_agent.settings import Settings
from rcmu_agent.testing import FakeServer, Recorded, Reply, completion, serve
from rcmu_agent.visual_budget import fit_to_budget

pytestmark = pytest.mark.integration  # loopback OpenAI-compatible server

MODEL = "weihongliang/RC-Qwen2VL-2b"
KEY = "sk-test-0123456789abcdef"
FAST: dict[str, Any] = {"retry_wait_max": 0.05, "timeout": 5.0}


@pytest.fixture()
def server() -> Iterator[FakeServer]:
    with serve() as state:
        yield state


def vlm(server: FakeServer, **overrides: Any) -> OpenAICompatibleVLM:
    options: dict[str, Any] = {"model": MODEL, "base_url": server.url, "api_key": KEY, **FAST}
    options.update(overrides)
    return OpenAICompatibleVLM(**options)


def pixels_of_data_url(url: str) -> np.ndarray:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    data = base64.b64decode(url[len(prefix) :], validate=True)
    with Image.open(io.BytesIO(data)) as jpeg:
        assert jpeg.format == "JPEG"
        return np.asarray(jpeg.convert("RGB"))


def same_photo(sent: np.ndarray, image: Image.Image) -> bool:
    """The photo at the visual token budget's size, through JPEG at quality 92 (close, not exact)."""
    expected = np.asarray(fit_to_budget(image), dtype=np.float32)
    return sent.shape == expected.shape and float(np.abs(sent.astype(np.float32) - expected).mean()) < 3


TEXT = (
    "[1]: The information of the person Alice: Alice is a marine biologist.\n"
    "[2]: The information of the person Bob: Bob plays the cello.\n"
    "Who is on the left?  Answer with the index.\n"
)


def assert_request_shape(sent: Recorded, text: str, *, image: Image.Image | None, max_tokens: int) -> None:
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.body
    assert body["model"] == MODEL
    assert body["temperature"] == 0
    assert body["max_tokens"] == max_tokens
    assert not body.get("stream")
    assert [m["role"] for m in body["messages"]] == ["user"]  # one user turn, no system message
    content = body["messages"][0]["content"]
    if image is None:
        assert content == [{"type": "text", "text": text}]
        return
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert same_photo(pixels_of_data_url(content[0]["image_url"]["url"]), image)
    assert content[1] == {"type": "text", "text": text}


def test_exact_request_with_image(server: FakeServer, faces_dir: Path) -> None:
    image = load_image(faces_dir / "scenes" / "two_people.jpg")
    server.then(Reply(text="Alice [1] stands on the left.\nBob [2] is on the right."))

    answer = vlm(server, max_new_tokens=77).generate(TEXT, image)

    assert answer == "Alice [1] stands on the left.\nBob [2] is on the right."
    assert len(server.requests) == 1
    assert_request_shape(server.requests[0], TEXT, image=image, max_tokens=77)


def test_text_only_request_and_per_call_max_tokens(server: FakeServer) -> None:
    answer = vlm(server).generate("What is RC-Qwen2-VL?", max_new_tokens=5)

    assert answer == Reply().text
    assert len(server.requests) == 1
    assert_request_shape(server.requests[0], "What is RC-Qwen2-VL?", image=None, max_tokens=5)


def test_rate_limit_is_retried_until_success(server: FakeServer) -> None:
    limited = Reply(429, {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}})
    server.then(limited, limited, Reply(text="third time lucky"))

    assert vlm(server, max_retries=4).generate("hi") == "third time lucky"
    assert len(server.requests) == 3
    assert all(r.body == server.requests[0].body for r in server.requests)  # same request each time


def test_persistent_server_error_gives_up_after_max_retries(server: FakeServer) -> None:
    server.default = Reply(500, {"object": "error", "message": "CUDA out of memory", "code": 500})

    with pytest.raises(BackendError) as caught:
        vlm(server, max_retries=3).generate("hi")

    assert len(server.requests) == 4
    message = str(caught.value)
    assert "500" in message and "CUDA out of memory" in message and "4 attempts" in message
    assert "RCMU_MAX_RETRIES" in caught.value.fix
    assert "\n" not in message


def test_bad_key_fails_at_once_without_leaking_it(server: FakeServer) -> None:
    server.default = Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "401"}})

    with pytest.raises(BackendError) as caught:
        vlm(server, max_retries=4).generate("hi")

    assert len(server.requests) == 1
    assert "API key" in caught.value.problem and server.url in caught.value.problem
    assert "RCMU_API_KEY" in caught.value.fix and "OPENAI_API_KEY" in caught.value.fix
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no SDK traceback


def test_unreachable_server() -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"

    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        OpenAICompatibleVLM(model=MODEL, base_url=url, api_key=KEY, max_retries=2, **FAST).generate("hi")

    assert time.monotonic() - started < 5
    assert "cannot reach" in caught.value.problem and url in caught.value.problem
    assert "vllm serve" in caught.value.fix and "RCMU_BASE_URL" in caught.value.fix


def test_slow_server_times_out(server: FakeServer) -> None:
    server.default = Reply(delay=3.0)

    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        vlm(server, timeout=0.3, max_retries=1).generate("hi")

    assert time.monotonic() - started < 2.5
    assert len(server.requests) == 2  # a timeout is retried, then reported
    assert "did not answer within 0.3 s" in caught.value.problem
    assert "RCMU_REQUEST_TIMEOUT" in caught.value.fix


def test_unknown_model(server: FakeServer) -> None:
    server.default = Reply(404, {"object": "error", "message": "The model `nope` does not exist."})

    with pytest.raises(BackendError) as caught:
        vlm(server, model="nope").generate("hi")

    assert len(server.requests) == 1
    assert "'nope'" in caught.value.problem and "does not exist" in caught.value.problem
    assert "RCMU_MODEL" in caught.value.fix and "/v1/models" in caught.value.fix


def test_bad_request_carries_the_servers_message(server: FakeServer) -> None:
    server.default = Reply(400, {"object": "error", "message": "max_tokens is too large:\n 99999 > 32768"})

    with pytest.raises(BackendError) as caught:
        vlm(server).generate("hi", max_new_tokens=99999)

    assert len(server.requests) == 1
    assert "HTTP 400" in caught.value.problem
    assert "max_tokens is too large: 99999 > 32768" in caught.value.problem  # one line, server's words


@pytest.mark.parametrize(
    ("body", "expected"),
    [(completion(None, choices=False), "no choices"), (completion(None), "no text")],
)
def test_empty_answers_are_errors(server: FakeServer, body: dict[str, Any], expected: str) -> None:
    server.default = Reply(body=body)

    with pytest.raises(BackendError, match=expected):
        vlm(server).generate("hi")
    assert len(server.requests) == 1


def test_agenerate_over_http(server: FakeServer, faces_dir: Path) -> None:
    image = load_image(faces_dir / "scenes" / "two_people.jpg")
    backend = vlm(server, max_new_tokens=64)
    server.then(Reply(429, {"error": {"message": "slow down"}}), Reply(text="async answer"))

    assert asyncio.run(backend.agenerate(TEXT, image)) == "async answer"
    assert len(server.requests) == 2
    assert_request_shape(server.requests[1], TEXT, image=image, max_tokens=64)

    async def several() -> list[str]:  # a second event loop, and concurrent calls on it
        return await asyncio.gather(*(backend.agenerate(f"q{i}") for i in range(3)))

    assert asyncio.run(several()) == [Reply().text] * 3
    texts = sorted(r.body["messages"][0]["content"][0]["text"] for r in server.requests[2:])
    assert texts == ["q0", "q1", "q2"]
    # each `asyncio.run` closed its own client before its loop closed: no leaked sockets
    assert all(client.is_closed() for client, _ in backend._async_clients.values())


def test_agenerate_translates_errors(server: FakeServer) -> None:
    server.default = Reply(401, {"error": {"message": "bad key"}})

    with pytest.raises(BackendError, match="rejected the API key"):
        asyncio.run(vlm(server).agenerate("hi"))
    assert len(server.requests) == 1


def test_load_backend_builds_once_from_settings(server: FakeServer) -> None:
    settings = Settings(backend="openai", base_url=server.url, model=MODEL, api_key=SecretStr(KEY), max_new_tokens=33)

    backend = load_backend(settings)

    assert isinstance(backend, OpenAICompatibleVLM)
    assert load_backend(settings) is backend
    assert KEY not in repr(backend)
    assert backend.generate("hi") == Reply().text
    assert_request_shape(server.requests[0], "hi", image=None, max_tokens=33)


def test_api_key_fallbacks(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError) as caught:
        OpenAICompatibleVLM(model="gpt-4o", base_url=None, api_key=None)
    assert "RCMU_API_KEY" in caught.value.fix and "OPENAI_API_KEY" in caught.value.fix

    vlm(server, api_key=None).generate("hi")  # a self-hosted server needs no key
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    vlm(server, api_key=None).generate("hi")
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer EMPTY", "Bearer sk-from-env"]
