"""`rcmu mcp`: the rcmu tools as a Model Context Protocol server, the plugin form chat assistants load.

Every MCP tool is one of the LangChain tools (`rcmu_agent.tools`), called as a LangChain tool call: the
same argument schema (it becomes the MCP input schema), the same code, the same `problem — fix` errors;
the descriptions add how the tools chain (teaching a face of a group photo from its number in an answer).
The MCP layer adds what MCP clients expect: `structuredContent` validated against an output schema, a
short text for the model, the photo redrawn with numbered boxes as image content, errors as tool
errors (`isError: true`), progress notifications (each step, and a heartbeat while the model loads or
answers), and the people in memory as `rcmu://people/{id}` resources. No path on the server's disk is
sent to a client.

Users: over stdio the server serves the one user it was started for; over streamable HTTP each request
carries a bearer token, and the token's user (from a tokens file, see `rcmu_agent.tokens`) is the only
memory that request can touch. No tool argument names a user. Photo paths are read only inside the
allowed folders: the client's declared roots over stdio (it runs on the user's own machine), else
`RCMU_ALLOWED_ROOTS`; over HTTP only `RCMU_ALLOWED_ROOTS`, since a remote client's roots describe its
own disk, not this server's.

Every tool error a client sees is one line, `problem — fix`, worded for a tool caller (`_errors`):
argument errors name the caller's own argument paths, not the SDK's pydantic text. The server offers
tools, resources and prompts (`_prompts`), each with something in it; `_http` serves it over HTTP;
`_outputs` holds the output schemas and strips server paths from what a client is sent.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from langchain_core.messages import ToolMessage
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, ImageContent, InputRequiredResult, Resource, TextContent
from pydantic import BaseModel, ValidationError

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import NotFoundError, RcmuError
from rcmu_agent.schema import ContextEntry, Region
from rcmu_agent.tokens import load_tokens, user_for_token
from rcmu_agent.tools._common import RcmuTool
from rcmu_agent.tools.mcp._errors import argument_problems, for_tool_caller, unknown_tool, with_tool_fixes
from rcmu_agent.tools.mcp._http import auth_settings
from rcmu_agent.tools.mcp._outputs import OUTPUTS, without_paths
from rcmu_agent.tools.mcp._prompts import add_prompts
from rcmu_agent.tools.toolkit import TOOL_CLASSES

__all__ = ["TokenFileVerifier", "build_server"]

log = logging.getLogger(__name__)
T = TypeVar("T")
PEOPLE_URI = "rcmu://people/{entity_id}"
HEARTBEAT = 1.0  # seconds between progress notifications while a step runs
_ASKS_MODEL = {"ask_about_photo", "describe_photo", "recall"}  # and search_photos with a question
_DRAWN = {"ask_about_photo", "describe_photo"}  # answers about a photo come back with the photo annotated
_PREVIEW_SIDE = 1600  # the annotated photo a chat shows; a 12 MP PNG would be ~20 MB of base64
# The official SDK's HTTP client drops any server-sent event over 1 MiB (its whole result included):
# a preview is PNG (exact pixels) when it fits this many bytes of base64, else JPEG, shrunk if need be.
_PREVIEW_BYTES = 700_000
# How the tools chain, for a host model that sees only this server's tools: the LangChain descriptions say
# what each tool does; teaching a face from a group photo takes two calls, which each one's text names.
_CHAINING = {
    "ask_about_photo": " Every region it shows is numbered, unrecognised faces too: when the user says who [n] "
    "is, call `remember` with this photo and region '[n]'.",
    "remember": " To teach someone from a group photo, give that one photo and `region`: '[n]', the number "
    "`ask_about_photo` showed for them, or their box [x1, y1, x2, y2] in the photo's pixels. The face inside "
    "the region becomes their reference photo.",
}
_CITATION = re.compile(r"\s*\[\s*\d+\s*\]\s*")  # "[2]": how answers number their regions


class _Arguments(FuncMetadata):
    """The SDK's argument parsing, but a citation number sent as a string stays one. The SDK reads every
    string as JSON first when the field is not plain `str` (hosts that send lists as JSON text), which
    turns `remember`'s `region: "[2]"` — region number 2 — into the list `[2]`, a box of one number."""

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        parsed = super().pre_parse_json(data)
        return {k: v if isinstance(v, str) and _CITATION.fullmatch(v) else parsed[k] for k, v in data.items()}


class TokenFileVerifier:
    """Bearer tokens from the tokens file (re-read per request: revoking needs no restart)."""

    def __init__(self, path: Path | None = None, *, token: str | None = None, user: str | None = None) -> None:
        self.path, self.token, self.user = path, token, user

    async def verify_token(self, token: str) -> AccessToken | None:
        tokens = await asyncio.to_thread(load_tokens, self.path) if self.path else {}
        if self.token and self.user:
            tokens = {**tokens, self.token: self.user}
        user = user_for_token(token, tokens)
        return AccessToken(token=token, client_id=user, scopes=[], subject=user) if user else None


class _Progress:
    """MCP progress for one call: a step at the start and end, and while a slow step runs (first model
    load, a long answer) a heartbeat every `HEARTBEAT` seconds naming the step and its elapsed time, so
    a client can tell a working server from a hung one. Values only grow, as the protocol asks; the
    total is known only at the end. A no-op when the client sent no progress token."""

    def __init__(self, ctx: Context) -> None:
        self.ctx, self.done = ctx, 0

    async def step(self, message: str, *, last: bool = False) -> None:
        await self.ctx.report_progress(self.done, self.done if last else None, message)
        self.done += 1

    async def during(self, work: Awaitable[T], doing: str) -> T:
        task = asyncio.ensure_future(work)
        started = time.monotonic()
        try:
            while not (await asyncio.wait({task}, timeout=HEARTBEAT))[0]:
                await self.step(f"{doing} ({time.monotonic() - started:.0f} s)")
            return task.result()
        finally:
            task.cancel()  # a cancelled call (client gone) takes its work with it; no-op when finished


class _Bridge:
    """Binds MCP calls to LangChain tools: which user, which folders, and the result's MCP shape."""

    def __init__(self, assistant: Assistant, user: str | None) -> None:
        self.assistant = assistant
        self.user = user  # stdio: the one user; None: from the request's bearer token

    def current_user(self) -> str:
        if self.user is not None:
            return self.user
        token = get_access_token()
        if token is None or not token.subject:
            raise ToolError("error: this request carries no valid token — send Authorization: Bearer <token>")
        return token.subject

    async def roots(self, ctx: Context) -> list[Path] | None:
        """The client's declared roots (stdio only), or None for RCMU_ALLOWED_ROOTS."""
        if self.user is None:
            return None
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.roots is None:
            return None
        try:
            listed = await ctx.session.list_roots()
        except Exception as exc:  # a client that declared roots but cannot list them: the setting decides
            log.warning("the client declared roots but listing them failed (%s); using RCMU_ALLOWED_ROOTS", exc)
            return None
        return [
            Path(unquote(urlsplit(str(root.uri)).path)) for root in listed.roots if str(root.uri).startswith("file:")
        ]

    async def call(self, tool_class: type[RcmuTool], name: str, arguments: dict[str, Any], ctx: Context) -> Any:
        user = self.current_user()
        bound: dict[str, Any] = {"assistant": self.assistant, "user": user, "roots": await self.roots(ctx)}
        tool = tool_class(**bound)
        progress = _Progress(ctx)
        await progress.step(f"{name} started")
        args = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in arguments.items()}
        args = {
            k: [i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in v] if isinstance(v, list) else v
            for k, v in args.items()
        }
        if name in _ASKS_MODEL or (name == "search_photos" and args.get("question")):
            await self._load_model(progress)
        call = tool.ainvoke({"type": "tool_call", "name": name, "args": args, "id": "mcp"})
        message = await progress.during(call, f"{name} working")
        await progress.step(f"{name} done", last=True)
        assert isinstance(message, ToolMessage)
        if message.status == "error":
            log.info("%s refused: %s", name, message.content)
            raise ToolError(str(message.content))
        artifact: dict[str, Any] = message.artifact or {}
        content: list[Any] = [TextContent(type="text", text=with_tool_fixes(str(message.content)))]
        if name in _DRAWN and artifact.get("photo"):
            drawn, mime = await asyncio.to_thread(self._drawn, artifact, user)
            content.append(ImageContent(type="image", data=drawn, mime_type=mime))
        return CallToolResult(content=content, structured_content=without_paths(artifact))

    async def _load_model(self, progress: _Progress) -> None:
        """The model is loaded on first use (seconds to minutes for transformers); loading it here, as a
        step of its own, lets the client show what the wait is for. Nothing to do once loaded, nor for
        a server backend."""

        def pending() -> Any:
            vlm = self.assistant.parts.vlm  # building the backend imports it: off the event loop too
            load = getattr(vlm, "load", None)
            return load if callable(load) and not getattr(vlm, "loaded", True) else None

        try:
            load = await asyncio.to_thread(pending)
            if load is not None:
                await progress.step("loading the vision-language model (first call only)")
                await progress.during(asyncio.to_thread(load), "loading the vision-language model")
        except RcmuError as exc:  # a model that cannot load: the same one-line fix a tool would give
            raise ToolError(str(exc)) from None

    def _drawn(self, artifact: dict[str, Any], user: str) -> tuple[str, str]:
        """The photo the answer is about, with each region's box and number: base64 and its MIME type."""
        from rcmu_agent.annotate import annotate

        entries = [
            ContextEntry(region=Region(box=r["box"], category=r["category"]), index=r["index"], name=r["name"])
            for r in artifact.get("regions", [])
            if r.get("box")
        ]
        image = annotate(self.assistant.photo(str(artifact["photo"]), user=user), entries, max_side=_PREVIEW_SIDE)
        return _encoded(image)

    def person(self, entity_id: str) -> str:
        """One memory entry as JSON, with small JPEG thumbnails of its reference photos (read through the
        memory's reference store, so any replica shows them); a photo the store no longer holds is left
        out and said in `missing`, one line."""
        from rcmu_agent.images import open_image

        user = self.current_user()
        memory = self.assistant.parts.memory
        try:
            entity = memory.get(user, entity_id)
        except (NotFoundError, RcmuError):
            raise ResourceError(
                f"no person {entity_id!r} in your memory — list them with the list_people tool"
            ) from None
        thumbnails, missing = [], ""
        for photo in entity.photos:
            try:
                data = memory.references.read(user, entity.id, photo)
            except NotFoundError as exc:
                missing = str(exc)
                continue
            with open_image(io.BytesIO(data)) as img:
                img.thumbnail((160, 160))
                buffer = io.BytesIO()
                img.convert("RGB").save(buffer, format="JPEG", quality=85)
            thumbnails.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
        entry = {"id": entity.id, "name": entity.name, "category": entity.category, "info": entity.info}
        return json.dumps({**entry, "thumbnails": thumbnails, **({"missing": missing} if missing else {})})


def _encoded(image: Any) -> tuple[str, str]:
    """PNG when it fits `_PREVIEW_BYTES` of base64, else JPEG (a photo's natural format, ~6x smaller),
    halved in size until it fits; each step is a single encode of an already shrunk preview."""
    kind, options = "PNG", dict[str, Any]()
    while True:
        buffer = io.BytesIO()
        image.save(buffer, format=kind, **options)
        data = base64.b64encode(buffer.getvalue()).decode()
        if len(data) <= _PREVIEW_BYTES or min(image.size) < 64:
            return data, f"image/{kind.lower()}"
        if kind == "PNG":
            kind, options = "JPEG", {"quality": 90}
        else:
            image = image.resize((image.width // 2, image.height // 2))


def _version() -> str:
    """The installed package's version, for `serverInfo` (a client shows which rcmu it talks to)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rcmu-agent")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


class _RcmuServer(MCPServer[Any]):
    """Lists the caller's own people as resources (each request sees only its user's), and words every
    tool error for the caller."""

    bridge: _Bridge
    schemas: dict[str, dict[str, Any]]  # each tool's input schema, as clients see it

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """The SDK's call with its errors reworded (`Error executing tool NAME: <pydantic's many lines>`):
        the cause is kept as `__cause__`, the arguments' `ValidationError` or the tool's `ToolError`. A
        crash keeps the SDK's generic text (its own may hold server details); the SDK logs it."""
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if name not in self.schemas:
                text = unknown_tool(name, self.schemas)
            elif isinstance(cause, ValidationError):
                text = argument_problems(name, self.schemas[name], cause)
                log.info("%s rejected arguments: %s", name, sorted({str(e["loc"][:1]) for e in cause.errors()}))
            else:
                text = for_tool_caller(str(cause if isinstance(cause, ToolError | ResourceError) else exc))
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)

    async def list_resources(self) -> list[Resource]:
        listed = await super().list_resources()
        user = self.bridge.current_user()
        entities = await asyncio.to_thread(self.bridge.assistant.entities, user=user)
        return listed + [
            Resource(
                uri=f"rcmu://people/{e.id}",
                name=e.name,
                description=f"{e.category}: {e.info}"[:200],
                mime_type="application/json",
            )
            for e in entities
        ]


def _tool(bridge: _Bridge, tool_class: type[RcmuTool]) -> Tool:
    """An MCP tool over a LangChain tool class: its argument model is the MCP input schema."""
    template = tool_class.model_fields
    name = str(template["name"].default)
    schema = template["args_schema"].default
    arg_model: type[ArgModelBase] = type(
        f"{schema.__name__}Arguments", (schema, ArgModelBase), {"__module__": __name__}
    )
    output = OUTPUTS[name]

    async def run(ctx: Context, **arguments: Any) -> Any:
        return await bridge.call(tool_class, name, arguments, ctx)

    return Tool(
        fn=run,
        name=name,
        title=None,
        annotations=None,
        description=str(template["description"].default) + _CHAINING.get(name, ""),
        parameters=arg_model.model_json_schema(by_alias=True),
        fn_metadata=_Arguments(arg_model=arg_model, output_model=output),
        is_async=True,
        context_kwarg="ctx",
    )


def build_server(
    assistant: Assistant,
    *,
    user: str | None,
    verifier: TokenFileVerifier | None = None,
    url: str | None = None,
) -> MCPServer[Any]:
    """The MCP server over `assistant`. `user` for stdio; `verifier` and the server's `url` for HTTP."""
    bridge = _Bridge(assistant, user)
    auth = None
    if verifier is not None:
        if not url:
            raise ValueError("an HTTP server needs its url (the issuer of its tokens)")
        auth = auth_settings(url)
    tools = [_tool(bridge, cast(type[RcmuTool], cls)) for cls in TOOL_CLASSES]
    server = _RcmuServer(
        name="rcmu",
        version=_version(),
        instructions=(
            "Personal photo memory: recognise the people and things the user taught in a photo and answer "
            "with [n] citations to them. Teach with `remember` (a face in a group photo: with its `region`), ask "
            "with `ask_about_photo`."
        ),
        tools=tools,
        token_verifier=verifier,
        auth=auth,
    )
    server.bridge = bridge
    server.schemas = {tool.name: tool.parameters for tool in tools}
    add_prompts(server)

    @server.resource(PEOPLE_URI, name="person", mime_type="application/json")
    async def person(entity_id: str) -> str:
        """A person, pet or thing in your memory: name, category, info and reference thumbnails."""
        return await asyncio.to_thread(bridge.person, entity_id)

    return server
