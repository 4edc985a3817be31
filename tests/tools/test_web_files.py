"""The web app's files are per login: uploads enter the uploader's vault, and every file Gradio serves
goes only to the login it was uploaded by or shown to — checked on `WebFiles` directly, then over real
HTTP against `rcmu web --auth` before and after a restart of the process.

PostScript, EPS and PDF uploads are refused by the photo decoders alone: a stand-in `gs` first on PATH
records being run, and must never have run.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.images import PhotoCache
from rcmu_agent.tools.web._files import WebFiles
from rcmu_agent.vault import PhotoVault, photo_id
from tests.tools._web_kit import start_web

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 20 20\n%%EndComments\n0 0 moveto 20 20 lineto stroke\n%%EOF\n"
POSTSCRIPT = b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 20 20\n%%EndComments\n0 0 moveto 20 20 lineto stroke\nshowpage\n"
PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
)
NOT_A_PHOTO = "is not an image rcmu can read — give a JPEG, PNG, WebP, HEIC or AVIF file"
NOT_YOURS = "was not uploaded from this login — upload it again"


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, format="PNG")
    return out.getvalue()


def _gs_trap(folder: Path) -> tuple[Path, Path]:
    """A folder holding a stand-in `gs` that records being run (then fails), and the file it writes."""
    bin_dir, ran = folder / "bin", folder / "gs-ran"
    bin_dir.mkdir(parents=True)
    gs = bin_dir / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{ran}"\nexit 1\n')
    gs.chmod(0o755)
    return bin_dir, ran


def _upload(folder: Path, name: str, data: bytes) -> str:
    """A file where Gradio puts an upload: `<upload folder>/<hash>/<name>`."""
    path = folder / photo_id(data).removeprefix("photo:") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


@pytest.fixture()
def web(tmp_path: Path) -> tuple[Path, PhotoVault]:
    (tmp_path / "uploads").mkdir()
    return tmp_path / "uploads", PhotoVault.in_folder(tmp_path / "vault")


def _files(folder: Path, vault: PhotoVault) -> WebFiles:
    """A web process's view of the files: a fresh one is a restart (the vault stays)."""
    return WebFiles(folder, PhotoCache(max_bytes=1 << 20, max_pixels=1 << 20, vault=vault), vault, max_bytes=1 << 20)


@pytest.mark.unit
def test_an_upload_is_its_uploaders_photo_before_and_after_a_restart(web: tuple[Path, PhotoVault]) -> None:
    folder, vault = web
    files = _files(folder, vault)
    beach, park = _upload(folder, "beach.png", _png((0, 90, 200))), _upload(folder, "park.png", _png((0, 160, 0)))
    junk = _upload(folder, "notes.png", b"not a photo at all")
    files.record("alice", [beach, park, junk])  # what the upload route answered alice
    files.claim("alice", [beach, park, junk])  # ... and, as it answered, her photos went into her vault
    files.claim("bob", [beach, park])  # a claim for what one never uploaded is nothing
    assert not vault.has("bob", photo_id(Path(beach).read_bytes()))

    taken = files.take("alice", {"path": beach, "meta": {"_type": "gradio.FileData"}})
    assert taken.name == "beach.png" and vault.get("alice", taken.id) == Path(beach).read_bytes()
    assert files.take("alice", beach) == taken  # the same upload again: the same photo
    for stranger in (beach, park, str(folder), str(folder.parent / "vault"), "/etc/passwd", f"{folder}/../x.png"):
        with pytest.raises(InvalidInputError, match=f"{NOT_YOURS}$"):
            files.take("bob", stranger)
    assert not vault.has("bob", taken.id)

    answer = Path(_upload(folder, "image.webp", b"an annotated copy"))
    files.shown("alice", [{"image": {"path": str(answer), "url": "..."}, "annotations": [{"label": "[1] Kit"}]}])
    assert files.may_fetch("alice", beach) and files.may_fetch("alice", str(answer))
    assert not files.may_fetch("bob", beach) and not files.may_fetch("bob", str(answer))
    assert not files.may_fetch("alice", str(folder.parent / "vault")) and not files.may_fetch("alice", "/etc/hosts")

    restarted = _files(folder, vault)  # nothing recorded: only the vault says whose a file is
    assert restarted.take("alice", beach) == taken and restarted.may_fetch("alice", beach)
    assert restarted.take("alice", park).id == photo_id(Path(park).read_bytes())  # claimed at upload: still hers
    with pytest.raises(InvalidInputError, match=NOT_YOURS):
        restarted.take("alice", junk)  # not a photo: recorded by the old process only, so refused now
    for path in (beach, park, junk, str(answer)):
        assert not restarted.may_fetch("bob", path)
        with pytest.raises(InvalidInputError, match=NOT_YOURS):
            restarted.take("bob", path)
    assert not restarted.may_fetch("alice", str(answer))  # a shown copy was never in a vault: refused


@pytest.mark.unit
def test_postscript_eps_and_pdf_uploads_are_refused_without_ghostscript(
    web: tuple[Path, PhotoVault], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import EpsImagePlugin

    folder, vault = web
    bin_dir, ran = _gs_trap(tmp_path / "trap")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # found again on the new PATH
    files = _files(folder, vault)
    for name, data in (("drawing.eps", EPS), ("page.ps", POSTSCRIPT), ("scan.pdf", PDF)):
        upload = _upload(folder, name, data)
        files.record("alice", [upload])
        with pytest.raises(InvalidInputError) as refused:
            files.take("alice", upload)
        assert str(refused.value) == f"{name} {NOT_A_PHOTO}"
        assert not vault.has("alice", photo_id(data))
    assert not ran.exists()

    with Image.open(io.BytesIO(EPS)) as img, pytest.raises((OSError, subprocess.SubprocessError)):
        img.load()  # the trap works: Pillow's own EPS decoder, asked directly, runs the stand-in
    assert ran.exists()


@pytest.mark.unit
def test_a_button_uses_the_uploads_it_was_sent_with_even_when_it_overtakes_their_event(
    web: tuple[Path, PhotoVault],
) -> None:
    """A form's upload event keeps vault ids; a click that overtook it (or came after the choice
    changed) takes the uploads it was sent with, the same way, instead of a stale choice."""
    from rcmu_agent.tools.web import _handlers as act

    folder, vault = web
    files = _files(folder, vault)
    beach, park = _upload(folder, "beach.png", _png((0, 90, 200))), _upload(folder, "park.png", _png((0, 160, 0)))
    files.record("alice", [beach, park])
    picked = act.pick(files, "alice", [_file(beach)])
    assert [t.name for t in picked.taken()] == ["beach.png"] and picked.ids()[0].id == photo_id(
        Path(beach).read_bytes()
    )
    assert act.current(files, "alice", [_file(beach)], picked) is picked  # the event's own ids
    assert [t.name for t in act.current(files, "alice", [_file(park)], picked).taken()] == ["park.png"]
    assert act.current(files, "alice", None, picked).taken() == ()  # the form was cleared
    with pytest.raises(InvalidInputError, match=NOT_YOURS):
        act.current(files, "bob", [_file(beach)], act.Picked()).ids()
    eps = _upload(folder, "drawing.eps", EPS)
    files.record("alice", [eps])
    refused = act.pick(files, "alice", [_file(beach), _file(eps)])
    assert refused.photos == () and refused.refused is not None  # nothing kept from half a choice
    with pytest.raises(InvalidInputError, match=f"drawing.eps {NOT_A_PHOTO}"):
        act.current(files, "alice", [_file(beach), _file(eps)], refused).ids()


# ---- over HTTP: a real `rcmu web` process ------------------------------------------------------------


def _serving(home: Path, users: Path, path: str) -> AbstractContextManager[str]:
    """`rcmu web --auth users --context-only` on a free port with `path` as PATH; its URL."""
    return contextmanager(start_web)(home, {"PATH": path}, "--auth", str(users), "--context-only")


@contextmanager
def _login(url: str, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("login", data={"username": user, "password": f"{user}-pw"}).raise_for_status()
        yield client


def _send(client: httpx.Client, name: str, data: bytes) -> str:
    """Upload as the page does; the server path Gradio gives the upload."""
    answer = client.post("gradio_api/upload", files={"files": (name, data, "application/octet-stream")})
    return str(answer.raise_for_status().json()[0])


def _call(client: httpx.Client, api: str, data: list[Any], session: str) -> tuple[str, Any]:
    """One event through Gradio's API, in page session `session`: ("complete" or "error", its data)."""
    sent = {"data": data, "session_hash": session}
    event = client.post(f"gradio_api/call/{api}", json=sent).raise_for_status().json()["event_id"]
    stream = client.get(f"gradio_api/call/{api}/{event}").text
    kind, last = "", None
    for line in stream.splitlines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind in ("complete", "error"):
            last = json.loads(line.removeprefix("data: "))
    return kind, last


def _file(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def _said(chat: list[dict[str, Any]]) -> str:
    """The conversation's last message as text (Gradio sends a message's content as a list of parts)."""
    content = chat[-1]["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def _fetch(client: httpx.Client, path: str) -> int:
    return client.get(f"gradio_api/file={path}").status_code


@pytest.mark.integration
def test_files_and_uploads_stay_with_their_login_across_a_restart(tmp_path: Path, faces_dir: Path) -> None:
    """Alice uploads a photo and gets it back annotated; bob is refused both URLs and cannot use her
    upload, before and after the process restarts; PostScript, EPS and PDF are refused, no gs run."""
    home, users = tmp_path / "home", tmp_path / "users.json"
    users.write_text(json.dumps({"alice": "alice-pw", "bob": "bob-pw"}))
    bin_dir, ran = _gs_trap(tmp_path)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    scene = (faces_dir / "scenes" / "two_people.jpg").read_bytes()

    with _serving(home, users, path) as url, _login(url, "alice") as alice, _login(url, "bob") as bob:
        upload = _send(alice, "scene.jpg", scene)
        assert _call(alice, "new_photo", [_file(upload)], "a1")[0] == "complete"
        kind, out = _call(alice, "turn", ["Who is on the left?", [], ""], "a1")
        assert kind == "complete", out
        chat, boxes = out[0], out[2]  # (the conversation's state, a server-side value, comes back as null)
        annotated = boxes["image"]["path"]
        assert "unrecognised person" in _said(chat) and boxes["annotations"]
        assert _fetch(alice, upload) == 200 and _fetch(alice, annotated) == 200
        for served in (upload, annotated, boxes["annotations"][0]["image"]["path"]):
            assert _fetch(bob, served) == 403
            assert httpx.get(f"{url}gradio_api/file={served}").status_code in (401, 403)  # no login
        assert _fetch(alice, str(home / "vault")) == 403 and _fetch(alice, "/etc/hosts") == 403
        video = {"video": ("rec.mp4", b"not a video", "video/mp4")}
        assert alice.post("gradio_api/process_recording", files=video).status_code == 403  # no ffmpeg either

        kind, out = _call(bob, "new_photo", [_file(upload)], "b1")  # bob, knowing her upload's path
        assert _said(out[1]) == f"⚠ photo 'scene.jpg' {NOT_YOURS}"
        kind, out = _call(bob, "turn", ["Who is this?", [], ""], "b1")
        assert kind == "complete" and NOT_YOURS in _said(out[0]), out  # said in the conversation, one line

        for name, data in (("drawing.eps", EPS), ("page.ps", POSTSCRIPT), ("scan.pdf", PDF)):
            sent = _send(alice, name, data)
            kind, out = _call(alice, "new_photo", [_file(sent)], "a2")
            assert _said(out[1]) == f"⚠ {name} {NOT_A_PHOTO}", out
            kind, out = _call(alice, "teach_photos", [[_file(sent)], ""], "a3")
            assert out[1] == f"⚠ {name} {NOT_A_PHOTO}", out
            kind, out = _call(alice, "remembered", ["Kit", "person", "a friend", [_file(sent)]], "a3")
            assert kind == "complete" and out[0] == f"⚠ {name} {NOT_A_PHOTO}", out  # the form's status line
        assert not ran.exists()

    with _serving(home, users, path) as url, _login(url, "alice") as alice, _login(url, "bob") as bob:
        assert _fetch(bob, upload) == 403 and _fetch(bob, annotated) == 403
        assert _fetch(alice, upload) == 200  # her photo, by her vault
        kind, out = _call(bob, "teach_photos", [[_file(upload)], ""], "b2")  # bob teaches from her upload
        assert out[1] == f"⚠ photo 'scene.jpg' {NOT_YOURS}", out
        kind, out = _call(bob, "remembered", ["Stolen", "person", "not his", [_file(upload)]], "b2")
        assert kind == "complete" and out[0] == f"⚠ photo 'scene.jpg' {NOT_YOURS}", out
        kind, out = _call(bob, "remembered", ["Stolen", "person", "not his", [_file(upload)]], "b4")  # at once
        assert kind == "complete" and out[0] == f"⚠ photo 'scene.jpg' {NOT_YOURS}", out
        kind, out = _call(bob, "new_photo", [_file(upload)], "b3")
        assert _said(out[1]) == f"⚠ photo 'scene.jpg' {NOT_YOURS}"
        kind, out = _call(alice, "teach_photos", [[_file(upload)], "⚠ an old refusal"], "a4")  # hers, by her vault
        assert kind == "complete" and out[1] == "", out  # (and the old refusal is cleared)
        kind, out = _call(alice, "remembered", ["Someone", "person", "in her photo", [_file(upload)]], "a4")
        assert kind == "complete" and out[0] == "remembered **Someone** (person) with 1 photo", out
        assert not ran.exists()
    assert not (home / "vault" / "bob").exists()
    assert not (home / "web" / "users").exists()  # no per-login copies beside the vault any more
