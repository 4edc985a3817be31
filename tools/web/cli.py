"""`rcmu web`: start the web app (Gradio) on this machine.

Gradio's upload folder is in the home (`RCMU_HOME/web/uploads`); each upload becomes a photo in the
uploading login's vault, and every file there is served only to the login it came from or was shown
to (`rcmu_agent.tools.web._files`). Nothing is fetched from the internet, and with `--auth users.json`
each login is its own memory user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from rcmu_agent.cli_kit import err, run
from rcmu_agent.cli_kit import settings as make_settings

__all__ = ["register", "web"]


def _logins(path: Path) -> list[tuple[str, str]]:
    """`{"alice": "password", ...}`: each login is also the memory user's id."""
    from rcmu_agent.errors import InvalidInputError
    from rcmu_agent.users import check_user

    try:
        users = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path} ({type(exc).__name__})", 'write {"alice": "password"}') from None
    if not isinstance(users, dict) or not users or not all(isinstance(v, str) and v for v in users.values()):
        raise InvalidInputError(f"{path} is not a JSON object of logins to passwords", 'write {"alice": "password"}')
    return [(check_user(str(login)), password) for login, password in users.items()]


def web(
    host: Annotated[str, typer.Option(help="Address to serve on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    auth: Annotated[
        Path | None, typer.Option(help='Logins, JSON {"alice": "password"}: each login has its own memory.')
    ] = None,
    context_only: Annotated[
        bool, typer.Option("--context-only", help="No model: show recognition and the context it would receive.")
    ] = False,
) -> None:
    """Teach, ask and browse in the browser: chat about a photo, manage memory, search your photo library."""

    def serve() -> None:
        settings = make_settings()
        uploads = settings.home / "web" / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        os.environ["GRADIO_TEMP_DIR"] = str(uploads)  # before gradio is imported: uploads stay in the home
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        logins = _logins(auth) if auth else None
        from rcmu_agent.assistant import Assistant
        from rcmu_agent.tools.web.app import PAGE_CSS, PAGE_JS, THEME, build_app

        app = build_app(Assistant(settings), context_only=context_only, logins=logins is not None)
        err.print(f"rcmu web on http://{host}:{port}" + (" (logins required)" if logins else ""))
        app.queue().launch(
            server_name=host,
            server_port=port,
            auth=logins,
            theme=THEME,
            js=PAGE_JS,
            css=PAGE_CSS,
            show_error=True,
            quiet=True,
            max_file_size=settings.max_image_bytes,
            ssr_mode=False,  # no Node server: one process, nothing else to install
        )

    run(serve)


def register(app: typer.Typer) -> None:
    app.command()(web)
