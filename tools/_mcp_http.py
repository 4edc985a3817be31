"""`rcmu mcp --http`: the streamable HTTP app around the MCP server, sized and guarded for photos.

- Request size: a photo sent inline is base64 inside a JSON-RPC request, 4/3 of its bytes. The SDK
  answers any request over 4 MiB with 413, so an ordinary phone photo of 4 MB failed over HTTP while the
  same bytes worked over stdio. The limit here is the project's own photo limit (`RCMU_MAX_IMAGE_BYTES`)
  as base64, plus room for the rest of the request. A request over it is answered with a JSON-RPC error
  saying so (the SDK's 413 is plain text, which its own client reports as "Server returned an error
  response"). Bodies are read only after the bearer token is checked.
- Authentication: bearer tokens from a tokens file, checked on every request. There is no OAuth
  authorization server, so none is advertised: a missing or bad token gets a plain 401 with
  `WWW-Authenticate: Bearer` (`error="invalid_token"` for a bad one) and no `resource_metadata`, and its
  body says which it was. Pointing clients at a metadata document made them (MCP Inspector among them)
  start an OAuth flow against a 404 instead of reporting the bad token.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["auth_settings", "request_limit", "serve_http"]

ENVELOPE = 1 << 20  # the JSON-RPC envelope and the other arguments: a question, regions, info


def request_limit(max_image_bytes: int) -> int:
    """The largest request body: one photo of `max_image_bytes` as base64, and the rest of the request."""
    return 4 * -(-max_image_bytes // 3) + ENVELOPE


def auth_settings(url: str) -> AuthSettings:
    """Bearer tokens checked by this server itself, with nothing advertised. The SDK asks for an issuer
    whenever a token verifier is used; with no `resource_server_url` it serves no metadata route and
    names none in a 401."""
    return AuthSettings(issuer_url=url, resource_server_url=None)  # type: ignore[arg-type]  # pydantic parses it


class _ForCallers:
    """Rewrites the SDK's two bare HTTP refusals into words a client shows its user: a 401 says whether
    the token was missing or not valid (RFC 6750: no error code when none was sent), and a 413 becomes a
    JSON-RPC error naming the limit (the SDK's is plain text, which its own client reports only as
    "Server returned an error response")."""

    def __init__(self, app: ASGIApp, limit: int, max_image_bytes: int) -> None:
        self.app = app
        too_large = (
            f"the request is over this server's {limit / 2**20:.0f} MiB limit (one photo of up to "
            f"{max_image_bytes / 2**20:.0f} MiB as base64) — send a smaller photo, or one photo per call"
        )
        error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": too_large}}
        self.too_large = json.dumps(error, ensure_ascii=False)

    def refusal(self, status: int, scope: Scope) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if status == 413:
            return self.too_large.encode(), []
        sent = any(k == b"authorization" and v.lower().startswith(b"bearer ") for k, v in scope["headers"])
        if sent:
            problem = "the bearer token is not valid — send one the server was given (--token or its tokens file)"
            challenge = f'Bearer realm="rcmu", error="invalid_token", error_description="{problem.split(" — ")[0]}"'
            body = {"error": "invalid_token", "error_description": problem}
        else:
            challenge = 'Bearer realm="rcmu"'
            body = {"error": "unauthorized", "error_description": "no token — send Authorization: Bearer <token>"}
        return json.dumps(body, ensure_ascii=False).encode(), [(b"www-authenticate", challenge.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def sending(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] in (401, 413):
                replaced = True
                body, extra = self.refusal(message["status"], scope)
                length = str(len(body)).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", length), *extra]
                await send({"type": "http.response.start", "status": message["status"], "headers": headers})
                await send({"type": "http.response.body", "body": body})
            elif not replaced:  # the SDK's own body of a replaced refusal is dropped
                await send(message)

        await self.app(scope, receive, sending)


def serve_http(server: MCPServer[Any], *, host: str, port: int, max_image_bytes: int) -> None:
    """Serve `server` over streamable HTTP at `http://host:port/mcp` until stopped."""
    import uvicorn

    limit = request_limit(max_image_bytes)
    app = server.streamable_http_app(max_request_body_size=limit, host=host)
    config = uvicorn.Config(
        _ForCallers(app, limit, max_image_bytes),
        host=host,
        port=port,
        log_level=server.settings.log_level.lower(),
        lifespan="on",
    )
    uvicorn.Server(config).run()
