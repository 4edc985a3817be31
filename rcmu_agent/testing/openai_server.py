"""A loopback OpenAI-compatible chat server that records what it receives, for tests and benchmarks.

Nothing is mocked between a client and the socket: the `openai` SDK builds and sends real HTTP, the
server records exactly what arrived and answers from a script (status, body, delay), as vLLM or
OpenAI would. Binds to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeServer", "Recorded", "Reply", "chunks", "completion", "serve"]

MODEL = "weihongliang/RC-Qwen2VL-2b"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # None: a chat.completion whose answer is `text`
    delay: float = 0.0
    text: str = "The man [1] is on the left."
    token_delay: float = 0.0  # between streamed chunks (`stream=True` requests), as a real model decodes
    tool_calls: list[dict[str, Any]] | None = None
    """`[{"name": "forget", "arguments": {"name": "Bella"}}]`: the reply calls these tools (a tool-calling
    chat model's answer) instead of writing `text`."""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls as OpenAI writes them: an id, and the arguments as a JSON string."""
    return [
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})},
        }
        for n, c in enumerate(calls)
    ]


def chunks(text: str, tool_calls: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """`text` as chat.completion.chunk objects, one word (with its leading space) per chunk, as vLLM
    streams: a role-only chunk first, a finish chunk last."""
    words = re.findall(r"\s*\S+", text) or [text]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [choice],
        }

    if tool_calls:
        calls = [{"index": n, **call} for n, call in enumerate(_tool_calls(tool_calls))]
        return [chunk({"role": "assistant", "content": None, "tool_calls": calls}), chunk({}, "tool_calls")]
    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": w}) for w in words), chunk({}, "stop")]


def completion(
    text: str | None, *, choices: bool = True, tool_calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else text}
    if tool_calls:
        message["tool_calls"] = _tool_calls(tool_calls)
    finish = "tool_calls" if tool_calls else "stop"
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}] if choices else [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }


@dataclass
class FakeServer:
    """Replies from `script` in order, then `default`; records every request it receives."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    script: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply)
    responder: Callable[[Recorded], Reply] | None = None  # computes replies when the script is empty
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep_requests: bool = True  # a long-running benchmark server would otherwise grow without bound
    in_flight: int = 0
    peak_in_flight: int = 0  # most requests being handled at once: what a concurrency test asserts

    def then(self, *replies: Reply) -> FakeServer:
        self.script.extend(replies)
        return self

    def next_reply(self, request: Recorded) -> Reply:
        with self.lock:
            if self.keep_requests:
                self.requests.append(request)
            if self.script:
                return self.script.popleft()
        return self.responder(request) if self.responder else self.default


def make_handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
            with state.lock:
                state.in_flight += 1
                state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            try:
                reply = state.next_reply(recorded)
                if reply.delay and state.stopping.wait(reply.delay):
                    return
            finally:
                with state.lock:
                    state.in_flight -= 1
            if self.path != "/v1/chat/completions":
                reply = Reply(404, {"object": "error", "message": f"no route {self.path}", "code": 404})
            if reply.body is None and reply.status == 200 and recorded.body.get("stream"):
                self._stream(reply)
                return
            body = completion(reply.text, tool_calls=reply.tool_calls) if reply.body is None else reply.body
            data = json.dumps(body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def _stream(self, reply: Reply) -> None:
            """Server-sent events in HTTP/1.1 chunked encoding, one event per chunk, then [DONE]."""
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = [f"data: {json.dumps(c)}\n\n" for c in chunks(reply.text, reply.tool_calls)]
                events.append("data: [DONE]\n\n")
                for n, event in enumerate(events):
                    if n and reply.token_delay and state.stopping.wait(reply.token_delay):
                        return
                    data = event.encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Quiet(ThreadingHTTPServer):
    """A client closing its connection (a finished stream, a timeout) is normal here, not a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(state: FakeServer | None = None, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeServer]:
    """Run a server (loopback, a free port by default) for the duration of the block; `state.url` ends in /v1."""
    state = state or FakeServer()
    httpd = _Quiet((host, port), make_handler(state))
    state.url = f"http://{host}:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        if thread.is_alive():
            raise RuntimeError("fake OpenAI server thread did not stop")


def main(argv: list[str] | None = None) -> None:
    """`python -m rcmu_agent.testing --port 8000`: the same server as its own process.

    A benchmark measures the client, so the server must not share its interpreter (and GIL); a manual
    check points `RCMU_BASE_URL` at a known address. It prints its URL on the first line of stdout,
    then serves until killed.
    """
    import argparse

    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible chat server for tests (no model).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each reply")
    parser.add_argument("--text", default=Reply.text, help="the reply's text")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed chunks")
    args = parser.parse_args(argv)
    reply = Reply(text=args.text, delay=args.delay, token_delay=args.token_delay)
    with serve(FakeServer(default=reply, keep_requests=False), host=args.host, port=args.port) as state:
        print(state.url, flush=True)
        state.stopping.wait()


if __name__ == "__main__":
    main()
