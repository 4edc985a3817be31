"""The LangGraph Server entry (`langgraph.json`): the graph, and bearer-token authentication.

`langgraph dev` (or a LangGraph Platform / self-hosted deployment) imports `graph` from here. Parts are
built from `RCMU_*` settings on first use; the server brings its own persistence (in-memory for
`langgraph dev`, Postgres in production), so threads and follow-ups work there without our SQLite.

`auth` maps bearer tokens to users from a JSON file (`RCMU_TOKENS_FILE`: `{"<token>": "<user>"}`), and
keeps every thread private to the user who created it. The graph then reads the user from the
authenticated identity — a request cannot name another user. Enable it with
`langgraph dev --config examples/langgraph-auth.json`, which also turns off LangGraph's Studio
pass-through (`disable_studio_auth`): without it, a request with no token but `x-auth-scheme: langsmith`
skips this handler.

`app` serves the answer's generative-UI component (ui/cited_photo.tsx, declared in langgraph.json
`ui` and bundled by `langgraph dev` at start, which needs Node.js) to chat front ends on another
origin, such as Agent Chat UI. LangGraph's own `/ui` routes answer with a script address relative to
the page, so a browser asks the front end's server for the bundle instead of this one, and, behind
authentication, the `<script>` tag's request carries no token. These two routes, listed before
LangGraph's, name the bundle by this server's absolute address and serve it without a token: it is
the component's public code, the same for everyone, and holds no user's data.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from langgraph_sdk import Auth
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from rcmu_agent.graph import build_graph
from rcmu_agent.tokens import load_tokens, user_for_token

__all__ = ["app", "auth", "graph"]

graph = build_graph()  # cheap: parts load lazily, on the first question

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None, headers: dict[Any, Any]) -> Auth.types.MinimalUserDict:
    """`Authorization: Bearer <token>`, or the same token as `X-Api-Key` (what Agent Chat UI's API-key
    field sends)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = _header(headers, "x-api-key")
    if not token.strip():
        raise Auth.exceptions.HTTPException(
            status_code=401, detail="send Authorization: Bearer <token> (or the token as X-Api-Key)"
        )
    path = Path(os.environ.get("RCMU_TOKENS_FILE", "tokens.json")).expanduser()
    tokens = await asyncio.to_thread(load_tokens, path)  # re-read per request: revoking needs no restart
    user = user_for_token(token.strip(), tokens)
    if user is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="unknown token")
    return {"identity": user}


def _header(headers: dict[Any, Any], name: str) -> str:
    """A header's value whether the server hands names and values as bytes or as text."""
    for key, value in (headers or {}).items():
        key = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key.lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return ""


@auth.on
async def deny_by_default(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Anything without a rule below is refused, so a new kind of resource is never shared by accident."""
    return False


@auth.on.assistants.read
async def read_assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
    return True  # the deployment's assistants are shared, read-only: a user cannot reconfigure them


@auth.on.assistants.search
async def search_assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
    return True


def _owned(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Tag what is being created with its creator; filter what is read to the caller's own."""
    if isinstance(value, dict):
        metadata = value.get("metadata")
        if metadata is None:
            metadata = value["metadata"] = {}
        if isinstance(metadata, dict):
            metadata["owner"] = ctx.user.identity
    return {"owner": ctx.user.identity}


@auth.on.threads
async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """A thread (and the runs in it) is visible to its creator only."""
    return _owned(ctx, value)


@auth.on.crons
async def own_crons(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    return _owned(ctx, value)


@auth.on.store
async def own_store(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Store items live under the user's own namespace."""
    namespace = tuple(value.get("namespace") or ())
    if not namespace or namespace[0] != ctx.user.identity:
        value["namespace"] = (ctx.user.identity, *namespace)


def _ui_folder() -> Path:
    """Where LangGraph keeps the bundled UI (`.langgraph_api/ui` under `langgraph dev`)."""
    from langgraph_api.js.ui import UI_ROOT_DIR

    return Path(UI_ROOT_DIR)


def _bundles() -> dict[str, Any]:
    file = _ui_folder() / "schemas.json"
    return json.loads(file.read_text()) if file.is_file() else {}  # re-read: the bundler may still be writing


async def ui_tags(request: Request) -> Response:
    """The tags that load a graph's UI bundle and render one component, by this server's absolute address
    (what LangGraph's JS server does). The part after the dashes is the route's OpenAPI entry.
    ---
    summary: The HTML that loads a generative-UI component, named in the JSON body as name
    tags: [UI]
    """
    graph_id = request.path_params["graph_id"]
    body = await request.json()
    name = body.get("name") if isinstance(body, dict) else None
    bundles = await asyncio.to_thread(_bundles)
    if graph_id not in bundles or not isinstance(name, str):
        return PlainTextResponse(f"no UI for graph {graph_id!r} (yet: the bundle is built at start)", status_code=404)
    base = _public_base(request)
    js_name = re.sub(r"[^a-zA-Z0-9]", "_", graph_id)
    tags = []
    for asset in bundles[graph_id]["assets"]:
        url = html.escape(f"{base}/ui/{quote(graph_id, safe='')}/{quote(Path(asset).name, safe='')}", quote=True)
        if asset.endswith(".css"):
            tags.append(f'<link rel="stylesheet" href="{url}" />')
        elif asset.endswith(".js"):
            call = html.escape(f"__LGUI_{js_name}.render({json.dumps(name)}, " + '"{{shadowRootId}}")', quote=True)
            tags.append(f'<script src="{url}" onload="{call}"></script>')
    return Response("\n".join(tags), media_type="text/html")


def _public_base(request: Request) -> str:
    """This server's address as the browser reached it: behind a TLS-terminating proxy the request arrives
    as http, and an http script on an https page is blocked, so the proxy's `X-Forwarded-Proto` wins."""
    base = request.base_url
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https"):
        base = base.replace(scheme=forwarded)
    return str(base).rstrip("/")


async def ui_asset(request: Request) -> Response:
    """One file of a graph's UI bundle, only those the bundler listed.
    ---
    summary: A file of a graph's generative-UI bundle (public, no token)
    tags: [UI]
    """
    graph_id, file = request.path_params["graph_id"], request.path_params["file"]
    bundles = await asyncio.to_thread(_bundles)
    listed = {Path(a).name for a in (bundles.get(graph_id) or {}).get("assets", [])}
    if file not in listed:
        return PlainTextResponse("no such UI file", status_code=404)
    return FileResponse(_ui_folder() / "public" / graph_id / file)


app = Starlette(
    routes=[
        Route("/ui/{graph_id}", ui_tags, methods=["POST"]),
        Route("/ui/{graph_id}/{file}", ui_asset, methods=["GET"]),
    ]
)
