"""Whose files the web app's files are: uploads enter a login's vault, and each file goes only to its login.

Gradio keeps every upload and every image it shows (annotated photos, previews, crops) in one folder,
`RCMU_HOME/web/uploads`, and its `/gradio_api/file=<path>` route serves any file there to anyone with
a login, by URL; its event API likewise accepts any path there as an "upload". So for every login:

- `FileGuard` (ASGI middleware, installed by `PrivateBlocks.launch`) records which login each upload
  came from, as Gradio's upload route answers, and refuses every file URL that is not this login's;
- `PrivateBlocks` records the files each event's outputs show, for the login the event ran for;
- `WebFiles.take` turns an upload into a vault id (read once through `rcmu_agent.door`, decode-checked
  by `PhotoCache.ingest`, kept in the login's `PhotoVault`) as it arrives: page state carries that
  id, never the path, and handlers resolve it only through the current login's vault.

An upload's claim is its bytes in the uploader's vault: each photo goes there as the upload route
answers (`WebFiles.claim`), so the claim survives a restart and, with a shared vault (`RCMU_DATABASE_URL`),
holds on every replica. A file whose bytes are in a login's vault is that login's (it gives them nothing
they do not hold); anything else (an upload that is not a photo, a shown copy) is recorded in this
process's memory only, so after a restart it is refused: deny by default.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rcmu_agent.door import Inbound, read_photo_file, shown_path
from rcmu_agent.errors import InvalidInputError, RcmuError
from rcmu_agent.images import PhotoCache
from rcmu_agent.vault import PhotoVault, photo_id

__all__ = ["FileGuard", "PrivateBlocks", "Taken", "UserFor", "WebFiles", "upload_key", "upload_name"]

UserFor = Callable[[str | None], str]  # a Gradio login (None: the app has no logins) → its memory user
_FILE_ROUTE = re.compile(r"/gradio_api/file[=/](.*)$")
_UPLOAD_ROUTE = re.compile(r"/gradio_api/upload/?$")
# Gradio routes the page never uses that run a decoder on a login's bytes (screen recordings: ffmpeg)
_UNUSED_ROUTE = re.compile(r"/gradio_api/process_recording/?$")


@dataclass(frozen=True)
class Taken:
    """An upload as the page keeps it: the photo's id in the login's vault, and the name it was sent as."""

    id: str
    name: str


class WebFiles:
    """Which login may fetch or use which file of Gradio's upload folder, and uploads into vaults."""

    def __init__(
        self, folder: Path, photos: PhotoCache, vault: PhotoVault, *, max_bytes: int, keep: int = 100_000
    ) -> None:
        self.folder = Path(os.path.realpath(folder))
        self.photos, self.vault, self.max_bytes, self.keep = photos, vault, max_bytes, keep
        self._logins: OrderedDict[str, set[str]] = OrderedDict()  # real path → logins it came from or went to
        self._ids: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()  # file identity → content id
        self._lock = threading.Lock()

    def record(self, user: str, paths: Iterable[str]) -> None:
        """`paths` were uploaded by, or shown to, `user`: theirs to fetch and to use."""
        with self._lock:
            for path in paths:
                real = self._inside(path)
                if real is not None:
                    self._logins.setdefault(real, set()).add(user)
                    self._logins.move_to_end(real)
            while len(self._logins) > self.keep:  # forgotten means refused, never allowed
                self._logins.popitem(last=False)

    def claim(self, user: str, paths: Iterable[str]) -> None:
        """`user` just uploaded `paths`: each photo among them goes into their vault at once (read through
        the door, decode-checked), so the claim outlives this process and reaches every replica that
        shares the vault. What is not a photo stays recorded here only; using it says why."""
        for path in paths:
            real = self._inside(path)
            if real is None or not self._recorded(user, real):
                continue
            try:
                data = read_photo_file(real, [self.folder], max_bytes=self.max_bytes, single_link=True).data
                if not self.vault.has(user, photo_id(data)):
                    self.photos.ingest(user, Inbound(data, name=Path(real).name))
            except RcmuError:
                continue  # refused: `take` gives the reason when the upload is used

    def shown(self, user: str, outputs: Any) -> None:
        """Record every file in an event's outputs (Gradio's `FileData`: dicts with a `path`) for `user`."""
        self.record(user, _paths(outputs))

    def may_fetch(self, user: str, path: str) -> bool:
        """Whether `user` may fetch the file at `path`: recorded for them, or its bytes are in their vault."""
        real = self._inside(path)
        if real is None:
            return False  # outside the upload folder: Gradio serves nothing of ours from there
        if self._recorded(user, real):
            return True
        pid = self._content_id(real)
        return pid is not None and self.vault.has(user, pid)

    def take(self, user: str, upload: Any) -> Taken:
        """The uploaded file `upload` (a path, or Gradio's `FileData` as a dict) as a photo in `user`'s vault.

        Read once through the door, inside the upload folder only. A file `user` uploaded in this
        process is decode-checked (photo formats only: EPS, PostScript and PDF never reach Ghostscript)
        and kept; one whose bytes are already in their vault is theirs; anything else is refused with
        one sentence that says nothing about whose it is or whether it exists.
        """
        path = _path(upload)
        if not path:
            raise InvalidInputError("no photo was uploaded", "upload a photo")
        name = upload_name(upload)
        refused = InvalidInputError(f"photo {name!r} was not uploaded from this login", "upload it again")
        real = self._inside(os.fspath(path))
        if real is None:
            raise refused
        theirs = self._recorded(user, real)
        try:
            data = read_photo_file(real, [self.folder], max_bytes=self.max_bytes, single_link=True).data
        except RcmuError as exc:
            if not theirs:
                raise refused from None
            raise type(exc)(exc.problem.replace(shown_path(real), repr(name)), exc.fix) from None
        pid = photo_id(data)
        if self.vault.has(user, pid):
            return Taken(pid, name)  # kept before (this upload again, or before a restart): no new decode
        if theirs:
            return Taken(self.photos.ingest(user, Inbound(data, name=name)), name)
        raise refused

    def _inside(self, path: str) -> str | None:
        """The real path of `path` if it lies inside the upload folder (None for anything else)."""
        try:
            real = Path(os.path.realpath(path))
        except (OSError, ValueError):
            return None
        return str(real) if real != self.folder and real.is_relative_to(self.folder) else None

    def _recorded(self, user: str, real: str) -> bool:
        with self._lock:
            return user in self._logins.get(real, ())

    def _content_id(self, real: str) -> str | None:
        """The vault id the file's bytes would have, remembered per file identity (hashing is not free)."""
        try:
            info = os.stat(real)
        except OSError:
            return None
        key = (real, info.st_ino, info.st_mtime_ns, info.st_size)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        try:
            pid = photo_id(read_photo_file(real, [self.folder], max_bytes=self.max_bytes).data)
        except RcmuError:
            return None
        with self._lock:
            self._ids[key] = pid
            while len(self._ids) > 10_000:
                self._ids.popitem(last=False)
        return pid


def _paths(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for item in value.values():
            yield from _paths(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _paths(item)


def _path(upload: Any) -> str:
    path = upload.get("path") if isinstance(upload, dict) else upload
    return os.fspath(path) if isinstance(path, str | os.PathLike) else ""


def upload_key(upload: Any) -> str:
    """Which upload this is, without keeping where it is: a digest of the path Gradio gave it (a folder
    named by the content's hash, then the file's name), so equal keys are the same bytes."""
    return hashlib.sha256(_path(upload).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def upload_name(upload: Any) -> str:
    """An upload's own file name (a path, or Gradio's `FileData`), printable and short: never the folder
    the server keeps it in."""
    name = "".join(c if c.isprintable() else "?" for c in Path(_path(upload)).name) or "photo"
    return name if len(name) <= 80 else name[:77] + "..."


class FileGuard:
    """ASGI middleware: file URLs only for their login, every upload recorded for its login, and no
    Gradio route that would hand a login's bytes to a decoder the photo app never needs."""

    def __init__(self, app: ASGIApp, files: WebFiles, user_for: UserFor) -> None:
        self.app, self.files, self.user_for = app, files, user_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        wanted = _FILE_ROUTE.search(path)
        if _UNUSED_ROUTE.search(path):
            await PlainTextResponse("Not used by this app.", status_code=403)(scope, receive, send)
            return
        if wanted is not None:
            user = await self._user(scope)
            if user is None or not await _in_thread(self.files.may_fetch, user, wanted.group(1)):
                await PlainTextResponse("File not allowed.", status_code=403)(scope, receive, send)
                return
        elif scope.get("method") == "POST" and _UPLOAD_ROUTE.search(path):
            user = await self._user(scope)
            if user is not None:
                await self.app(scope, receive, self._recording(user, send))
                return
        await self.app(scope, receive, send)

    def _recording(self, user: str, send: Send) -> Send:
        """`send`, recording the uploaded paths for `user` before the last byte of the answer goes out
        (so the page cannot ask for an upload before it is known as theirs)."""
        status, body = [0], bytearray()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False) and status[0] == 200:
                    try:
                        paths = json.loads(bytes(body))
                    except ValueError:
                        paths = []
                    if isinstance(paths, list):
                        uploaded = [p for p in paths if isinstance(p, str)]
                        self.files.record(user, uploaded)
                        await _in_thread(self.files.claim, user, uploaded)
            await send(message)

        return sending

    async def _user(self, scope: Scope) -> str | None:
        """The memory user of the request's login, as Gradio itself finds the login; None if there is none."""
        app = scope.get("app")  # Gradio's App: its logins, tokens and cookie name
        dependency = getattr(app, "auth_dependency", None)
        if getattr(app, "auth", None) is None and dependency is None:
            login = None  # an app without logins: everyone is the settings' user
        elif dependency is not None:
            found = dependency(Request(scope))
            login = await found if inspect.isawaitable(found) else found
            if not login:
                return None
        else:
            cookies, cookie = Request(scope).cookies, getattr(app, "cookie_id", "")
            token = cookies.get(f"access-token-{cookie}") or cookies.get(f"access-token-unsecure-{cookie}")
            login = getattr(app, "tokens", {}).get(token)
            if not login:
                return None
        try:
            return self.user_for(login)
        except RcmuError:
            return None


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)


class PrivateBlocks(gr.Blocks):
    """`gr.Blocks` whose files go only to their login: each event's output files are recorded for the
    login it ran for, and `launch` puts `FileGuard` in front of Gradio's routes. (Mounted into another
    app with `gr.mount_gradio_app` instead, that app needs `FileGuard` as its own middleware.)"""

    def __init__(self, files: WebFiles, user_for: UserFor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files, self.user_for = files, user_for

    async def process_api(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = await super().process_api(*args, **kwargs)
        bound = inspect.signature(gr.Blocks.process_api).bind_partial(self, *args, **kwargs)
        request = bound.arguments.get("request")
        for one in request if isinstance(request, list) else [request]:
            try:
                user = self.user_for(getattr(one, "username", None))
            except RcmuError:
                continue
            self.files.shown(user, result.get("data"))
        return result

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        """Gradio's launch with the guard in front; no static file workers (they would serve files around
        it) and no run history (it keeps answers and photo URLs in the browser, and can send runs to a
        Hugging Face bucket a request header names)."""
        options = dict(kwargs.pop("app_kwargs", None) or {})
        guard = Middleware(FileGuard, files=self.files, user_for=self.user_for)
        options["middleware"] = [*options.get("middleware", ()), guard]
        kwargs.update(num_workers=0, run_history=False)
        return super().launch(*args, app_kwargs=options, **kwargs)
