"""`rcmu mcp`: serve the rcmu tools over MCP (stdio for desktop assistants, streamable HTTP for remote apps).

In stdio mode stdout carries the protocol and nothing else: logs go to stderr only (a desktop host keeps
it in its log for the server; redirect it to a file when running by hand), and library progress bars are
switched off. Nothing is sent through MCP's logging capability, which the SDK has deprecated; what a
client sees of a long call are progress notifications (`rcmu_agent.tools.mcp.server`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from rcmu_agent.cli_kit import UserOpt, run
from rcmu_agent.cli_kit import assistant as make_assistant

__all__ = ["mcp", "register"]


def mcp(
    user: UserOpt = None,
    http: Annotated[
        str | None, typer.Option(help="Serve streamable HTTP on HOST:PORT (e.g. 127.0.0.1:8765) instead of stdio.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="HTTP: a bearer token for --user (or use --tokens-file) [env RCMU_MCP_TOKEN].")
    ] = None,
    tokens_file: Annotated[
        Path | None, typer.Option(help='HTTP: JSON {"<token>": "<user>"}, re-read per request [env RCMU_TOKENS_FILE].')
    ] = None,
) -> None:
    """Serve the rcmu tools to MCP clients (desktop assistants, IDE agents, chat apps).

    stdio (the default) serves one user, --user or RCMU_USER. With --http every request needs a bearer
    token and is served as that token's user. Photo paths are read only inside the client's declared
    roots (stdio) or RCMU_ALLOWED_ROOTS.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="rcmu %(levelname)s %(name)s: %(message)s")
    token = token or os.environ.get("RCMU_MCP_TOKEN")
    env_tokens = os.environ.get("RCMU_TOKENS_FILE")
    tokens_file = tokens_file or (Path(env_tokens) if env_tokens else None)

    def serve() -> None:
        from rcmu_agent.errors import InvalidInputError
        from rcmu_agent.tools.mcp._http import serve_http
        from rcmu_agent.tools.mcp.server import TokenFileVerifier, build_server
        from rcmu_agent.users import check_user

        assistant = make_assistant()
        if http is None:
            server = build_server(assistant, user=check_user(user or assistant.settings.user))
            server.run("stdio")
            return
        host, _, port = http.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidInputError(f"--http {http!r} is not HOST:PORT", "e.g. --http 127.0.0.1:8765")
        if not token and tokens_file is None:
            raise InvalidInputError(
                "an HTTP server needs bearer tokens", "pass --token SECRET (for --user) or --tokens-file tokens.json"
            )
        bound = check_user(user or assistant.settings.user) if token else None
        verifier = TokenFileVerifier(tokens_file, token=token, user=bound)
        url = f"http://{host}:{port}"
        server = build_server(assistant, user=None, verifier=verifier, url=url)
        serve_http(server, host=host, port=int(port), max_image_bytes=assistant.settings.max_image_bytes)

    run(serve)


def register(app: typer.Typer) -> None:
    app.command()(mcp)
