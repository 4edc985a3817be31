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
  body says which it was. A metadata document naming this server as the authorization server told
  clients to start an OAuth flow against an authorization server that does not exist (its metadata a
  404). MCP Inspector 2.x still tries OAuth on any 401 when a person is at the terminal; its
  `--stored-auth-only` runs report the refusal.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["auth_settings", "request_limit", "serve_http"]

_REFUSED = -32001  # JSON-RPC's server-defined range: the request was refused before it was read
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
    """Rewrites the SDK's two bare HTTP refusals as JSON-RPC errors a client shows its user (the SDK's
    own bodies are plain text or OAuth JSON, which its client reports only as "Server returned an error
    response"): a 401 says whether the token was missing or not valid (`WWW-Authenticate: Bearer`, with
    `error="invalid_token"` only when a token was sent, as RFC 6750 asks), a 413 names the limit."""

    def __init__(self, app: ASGIApp, limit: int, max_image_bytes: int) -> None:
        self.app = app
        self.too_large = (
            f"the request is over this server's {limit / 2**20:.0f} MiB limit (one photo of up to "
            f"{max_image_bytes / 2**20:.0f} MiB as base64) — send a smaller photo, or one photo per call"
        )

    def refusal(self, status: int, scope: Scope) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The body (a JSON-RPC error, which MCP clients show) and the extra headers of a refusal."""
        headers: list[tuple[bytes, bytes]] = []
        if status == 413:
            message = self.too_large
        elif any(k == b"authorization" and v.lower().startswith(b"bearer ") for k, v in scope["headers"]):
            message = "the bearer token is not valid — send one the server was given (--token or its tokens file)"
            challenge = 'Bearer realm="rcmu", error="invalid_token", error_description="the token is not valid"'
            headers.append((b"www-authenticate", challenge.encode()))
        else:
            message = "the request carries no bearer token — send the header Authorization: Bearer <token>"
            headers.append((b"www-authenticate", b'Bearer realm="rcmu"'))
        error = {"jsonrpc": "2.0", "id": None, "error": {"code": _REFUSED, "message": message}}
        return json.dumps(error, ensure_ascii=False).encode(), headers

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
