"""`rcmu web` as a real process, driven in a real headless Chromium (Debian's, through Playwright).

One app serves the whole module (two logins, a loopback OpenAI-compatible server that streams its
answer word by word, allowed folders that hold the rcmu home itself, and a stand-in `gs` first on PATH
that must never run); each test drives it as one login.
Every request the page makes is checked: anything leaving 127.0.0.1 fails the test (the page must work
offline). Screenshots of each step are written under the module's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from rcmu_agent.testing import FakeServer, serve
from rcmu_agent.vault import PhotoVault, photo_id
from tests.tools._web_kit import App, chromium, echo, fill, start_web

pytestmark = pytest.mark.integration  # the web app in chromium

MAX_PIXELS = 3_000_000  # the app's photo limit: the references fit, a 4 MP photo is "huge"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as one:
        yield one


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, browser: Browser) -> Iterator[App]:
    """`rcmu web --auth` for alice and bob, answering through the loopback server; the allowed folder
    holds the rcmu home, a copy of the scenes, and a folder whose faces alice will all know."""
    root = tmp_path_factory.mktemp("web")
    home, shots = root / "home", root / "screenshots"
    shots.mkdir()
    shutil.copytree(faces_dir / "scenes", root / "scenes")
    (root / "known").mkdir()
    shutil.copy(faces_dir / "scenes" / "two_people.jpg", root / "known")
    users = root.parent / f"{root.name}-users.json"
    users.write_text(json.dumps({"alice": "alice-pw", "bob": "bob-pw"}))
    trap, ran = root.parent / f"{root.name}-bin", root.parent / f"{root.name}-gs-ran"
    trap.mkdir()
    (trap / "gs").write_text(f'#!/bin/sh\necho "$@" >> "{ran}"\nexit 1\n')  # Ghostscript, if anything ran it
    (trap / "gs").chmod(0o755)
    with serve(FakeServer(responder=echo)) as fake:
        env = {
            "PATH": f"{trap}{os.pathsep}{os.environ['PATH']}",
            "RCMU_BACKEND": "openai",
            "RCMU_BASE_URL": fake.url,
            "RCMU_MODEL": "m",
            "RCMU_ALLOWED_ROOTS": str(root),
            "RCMU_MAX_IMAGE_PIXELS": str(MAX_PIXELS),
        }
        for url in start_web(home, env, "--auth", str(users)):
            state = App(url=url, root=root, home=home, shots=shots, fake=fake, browser=browser)
            yield state
            assert state.outside == []  # the page never left the machine
    assert not ran.exists()  # no upload ever reached Ghostscript


_fill = fill


def _choose(page: Page, elem: str, cluster: int) -> None:
    """Pick `cluster` in a cluster list (a dropdown of the clusters shown as cards)."""
    page.locator(f"#{elem} input").click()
    page.get_by_role("option", name=re.compile(rf"^cluster {cluster} \(")).click()


def _teach(page: Page, name: str, photo: Path, category: str = "person", info: str = "") -> None:
    page.get_by_role("tab", name="Memory").click()
    _fill(page, "teach-name", name)
    _fill(page, "teach-category", category)
    _fill(page, "teach-info", info or f"{name} is a friend")
    page.locator("#teach-photos input[type=file]").set_input_files(str(photo))
    page.locator("#teach-save").click()
    expect(page.locator("#teach-status")).to_contain_text(f"remembered {name}", timeout=60_000)


def _ask(page: Page, photo: Path | None, question: str, regions: str = "") -> None:
    page.get_by_role("tab", name="Chat").click()
    if photo is not None:
        ask = page.locator("#chat-ask")
        waiting = ask.inner_text().strip() == "Ask (upload a photo first)"
        page.locator("#chat-photo input[type=file]").set_input_files(str(photo))
        if waiting:  # the first photo: Ask changes once the upload has landed (a busy machine takes seconds)
            expect(ask).not_to_have_text("Ask (upload a photo first)", timeout=60_000)
        else:
            page.wait_for_timeout(1500)  # the upload lands before the question goes
    page.locator("#chat-regions textarea").fill(regions)
    page.locator("#chat-question textarea").fill(question)
    ask = page.locator("#chat-ask")
    if ask.is_enabled():
        ask.click()
    else:  # a refused photo: Ask is off, and Enter in the question hears why again
        page.locator("#chat-question textarea").press("Enter")


def _error(page: Page, text: str) -> None:
    """A readable one-line message in the page, next to what caused it, never a stack trace."""
    shown = page.get_by_text(text).first
    expect(shown).to_be_visible(timeout=60_000)
    assert "Traceback" not in page.content()


def test_teach_ask_stream_and_cite(app: App, faces_dir: Path) -> None:
    """Alice teaches through the page, asks about a photo, watches the answer stream, lights a box from
    its citation, reads the context, boxes a region herself, follows up, and meets readable errors."""
    page = app.page("alice")
    reference, scene = faces_dir / "reference", faces_dir / "scenes" / "two_people.jpg"
    _teach(page, "Barack Obama", reference / "obama_obama.jpg")
    _teach(page, "Joe Biden", reference / "biden_biden.jpg")
    expect(page.locator("#people-table")).to_contain_text("Joe Biden")
    app.shot(page, "01-memory")
    page.locator("#teach-photos input[type=file]").set_input_files(str(scene))
    page.locator("#teach-check").click()  # a reference photo with two faces gets a warning
    expect(page.locator("#teach-status")).to_contain_text("holds 2 faces", timeout=60_000)
    app.shot(page, "02-check-photos")

    _ask(page, scene, "Who is on the left?")
    log = page.locator("#chat-log")
    expect(log).to_contain_text("Barack Obama is a friend [1]", timeout=60_000)
    assert "Joe Biden is a friend [2]" not in log.inner_text()  # the first half shows before the second
    app.shot(page, "03-streaming")
    expect(log).to_contain_text("Joe Biden is a friend [2].", timeout=60_000)
    expect(log).to_contain_text("[1] = Barack Obama (person) at (253,47,409,203)")
    boxes = page.locator("#chat-boxes")
    expect(boxes).to_contain_text("[1] Barack Obama")
    expect(boxes).to_contain_text("[2] Joe Biden")

    log.locator(".rcmu-cite[data-n='2']").first.hover()  # a citation in the answer lights its box
    expect(boxes.locator("img.mask.active")).to_have_count(1)
    expect(boxes.locator("img.mask.inactive")).to_have_count(1)
    lit = boxes.locator("img.mask").nth(1)
    expect(lit).to_have_class(re.compile(r"\bactive\b"))
    app.shot(page, "04-citation-lights-box")
    page.locator("#chat-question").hover()
    expect(boxes.locator("img.mask.active")).to_have_count(0)
    log.locator(".rcmu-cite[data-n='1']").first.click()  # clicking pins it
    page.locator("#chat-question").hover()
    expect(boxes.locator("img.mask").nth(0)).to_have_class(re.compile(r"\bactive\b"))

    page.get_by_label("Show the context the model received").check()
    context = page.locator("#chat-context")
    expect(context).to_contain_text("The information of the person located at", timeout=10_000)
    expect(context).to_contain_text("Barack Obama is a friend")
    app.shot(page, "05-context")

    _ask(page, None, "And who is on the right?")  # a follow-up: same photo, no new upload
    expect(log.get_by_text("[2] = Joe Biden (person) at (778,57,965,243)")).to_have_count(2, timeout=60_000)
    assert app.fake.requests[-1].body["messages"][0]["content"][0]["type"] == "image_url"

    _ask(page, None, "What is <region1> holding?", regions="700,40,1000,300:person:the man on the right")
    expect(log.get_by_text("the man on the right [1]")).to_have_count(1, timeout=60_000)
    sent = app.fake.requests[-1].body["messages"][-1]["content"]
    question = next(part["text"] for part in sent if part["type"] == "text").rsplit("\n", 1)[-1]
    assert "<region1>" not in question and re.search(r"\(\d+,\d+\),\(\d+,\d+\)", question), question
    expect(context).to_contain_text("the man on the right")
    app.shot(page, "06-typed-region")

    corrupt = app.root.parent / "corrupt.jpg"
    corrupt.write_bytes(scene.read_bytes()[:3000])
    _ask(page, corrupt, "Who is this?")
    _error(page, "corrupt.jpg is corrupt or truncated")
    assert "uploads" not in page.get_by_text("corrupt.jpg is corrupt").first.inner_text()
    app.shot(page, "07-corrupt")

    from PIL import Image

    huge = app.root.parent / "huge.png"
    Image.new("RGB", (2600, 1600), (90, 120, 150)).save(huge)
    _ask(page, huge, "Who is this?")
    _error(page, "huge.png is 2600x1600 (4 MP), over the 3 MP limit — downscale it")
    app.shot(page, "08-huge")

    drawing = app.root.parent / "drawing.eps"  # PostScript: refused by the photo decoders, never rendered
    drawing.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 20 20\n%%EndComments\nshowpage\n%%EOF\n")
    refused = "drawing.eps is not an image rcmu can read — give a JPEG, PNG, WebP, HEIC or AVIF file"
    _ask(page, drawing, "Who is this?")
    _error(page, refused)
    page.get_by_role("tab", name="Memory").click()
    page.locator("#teach-photos input[type=file]").set_input_files(str(drawing))
    expect(page.locator("#teach-status")).to_contain_text(refused, timeout=60_000)
    app.shot(page, "09-eps")
    assert not app.home.joinpath("web", "users").exists()  # uploads live in the vault, not in copies
    assert (app.home / "vault" / "alice").is_dir()


def test_memory_edit_add_forget_and_recall(app: App, faces_dir: Path, shared_data: Path) -> None:
    """Alice edits info, adds a photo, forgets, and asks her memory a question with no photo."""
    page = app.page("alice")
    info = "Bella is our golden retriever; we adopted her on 2019-06-02 from the Leeds shelter"
    _teach(page, "Bella", shared_data / "objects" / "chelsea.png", category="pet", info=info)
    _fill(page, "recall-question", "When did we adopt Bella?")
    page.locator("#recall-question textarea, #recall-question input").first.press("Enter")
    answer = page.locator("#recall-answer")
    expect(answer).to_contain_text("we adopted her on 2019-06-02 from the Leeds shelter [1]", timeout=60_000)
    expect(answer).to_contain_text("[1] = Bella (pet), memory entry")
    app.shot(page, "11-recall")

    _fill(page, "edit-name", "Bella")
    _fill(page, "edit-info", "Bella is our golden retriever; she loves the beach")
    page.locator("#edit-save").click()
    table = page.locator("#people-table")
    expect(table).to_contain_text("she loves the beach", timeout=60_000)

    _fill(page, "edit-name", "Joe Biden")
    _fill(page, "edit-info", "")
    page.locator("#edit-photos input[type=file]").set_input_files(str(faces_dir / "reference" / "biden_biden2.jpg"))
    page.locator("#edit-save").click()
    expect(page.locator("#edit-status")).to_contain_text("updated Joe Biden: 2 photos", timeout=60_000)
    app.shot(page, "12-edited")

    _fill(page, "edit-name", "Bella")
    page.locator("#edit-forget").click()  # asks first
    expect(page.locator("#forget-question")).to_contain_text("Forget Bella (pet) and 1 photo?", timeout=30_000)
    page.locator("#forget-yes").click()
    expect(page.locator("#edit-status")).to_contain_text("forgot Bella", timeout=60_000)
    expect(page.locator("#forget-question")).to_be_hidden()
    expect(table).not_to_contain_text("Bella")
    app.shot(page, "13-forgot")


def test_library_refuses_the_home_then_indexes_clusters_and_searches(app: App) -> None:
    """Bob may index the allowed folder's photos but never the rcmu home inside it (alice's reference
    photos, the shared uploads, or a folder around the home); then clusters, search and questions."""
    page = app.page("bob")
    page.get_by_role("tab", name="Library").click()
    for folder, refusal in (
        ("/etc", "is outside the allowed folders"),
        (str(app.home / "photos" / "alice"), "is outside the allowed folders"),
        (str(app.home / "web" / "uploads"), "is outside the allowed folders"),
        (str(app.home / "photos" / "alice" / ".." / ".." / "web"), "is outside the allowed folders"),
        (str(app.root), "holds the rcmu data folder"),
    ):
        assert folder == "/etc" or Path(folder).exists()
        _fill(page, "library-folder", folder)
        page.locator("#library-index").click()
        _error(page, f"folder {folder!r} {refusal}")
        page.wait_for_timeout(300)
    app.shot(page, "21-refused")
    assert not list(app.home.glob("library/**/*alice*"))

    _fill(page, "library-folder", str(app.root / "scenes"))
    page.locator("#library-index").click()
    report = page.locator("#library-report")
    expect(report).to_contain_text("3 photos indexed", timeout=120_000)
    clusters = page.locator("#library-clusters")
    expect(clusters.locator(".rcmu-card").first).to_contain_text("Cluster", timeout=30_000)
    app.shot(page, "22-indexed")

    def listed() -> list[tuple[int, list[int]]]:
        """Each card's cluster id and face ids, as the page shows them."""
        found = []
        for text in clusters.locator(".rcmu-card").all_inner_texts():
            card = re.search(r"Cluster (\d+).*?face ids: ([\d, ]+)", text, re.S)
            assert card, text
            found.append((int(card.group(1)), [int(f) for f in card.group(2).split(",")]))
        return found

    first, second = listed()[:2]
    _fill(page, "library-merge", f"{first[0]} {second[0]}")
    page.locator("#library-merge-go").click()
    edited = page.locator("#library-edited")
    expect(edited).to_contain_text(f"merged into cluster {first[0]}", timeout=30_000)
    faces = dict(listed())[first[0]]
    assert sorted(faces) == sorted(first[1] + second[1])
    _choose(page, "library-split-id", first[0])
    _fill(page, "library-split-faces", str(second[1][0]))
    page.locator("#library-split-go").click()
    expect(edited).to_contain_text("new cluster", timeout=30_000)
    assert [second[1][0]] in [fs for _, fs in listed()]
    app.shot(page, "23-merged-split")

    _choose(page, "library-name-id", first[0])
    _fill(page, "library-name", "Someone Known")
    page.locator("#library-name-go").click()
    expect(edited).to_contain_text("Someone Known", timeout=30_000)
    _fill(page, "library-name", "Nobody")  # the named cluster left the list, and nothing is picked
    page.locator("#library-name-go").click()
    _error(page, "no cluster picked — pick one in the Cluster list (its id is on its card)")
    assert "rcmu people" not in page.content()  # the fix points at the page, not at the CLI

    hits = page.locator("#search-hits")
    _fill(page, "search-people", "Someone Known")
    page.locator("#search-go").click()
    expect(hits).to_contain_text("Someone Known", timeout=30_000)
    _fill(page, "search-people", "")
    _fill(page, "search-text", "a photo of a person")
    page.locator("#search-go").click()
    expect(hits.locator("img")).to_have_count(3, timeout=30_000)
    _fill(page, "search-since", "2016-01-01")
    _fill(page, "search-until", "2016-12-31")
    page.locator("#search-go").click()
    expect(hits.locator("img")).to_have_count(
        1, timeout=30_000
    )  # only alex_lacamoire1.jpg has an EXIF date (2016-05-04)
    app.shot(page, "24-search")

    _fill(page, "library-question", "When was I with Someone Known?")
    page.locator("#library-question textarea, #library-question input").first.press("Enter")
    answer = page.locator("#library-answer")
    cited = re.compile(r"Someone Known, named in the photo library \(in photo \d: \w+\.jpg\) \[\d\]")
    expect(answer).to_contain_text(cited, timeout=60_000)  # the answer cites a person's region in a photo
    expect(answer).to_contain_text(re.compile(r"\[\d\] Someone Known in two_people\.jpg at \(253, 47, 409, 203\)"))
    app.shot(page, "25-library-answer")


def test_logins_are_separate_and_uploads_stay_with_their_login(app: App, faces_dir: Path) -> None:
    """Bob sees none of alice's people, photos or clusters, and cannot use a file alice uploaded."""
    alice = app.page("alice")
    alice.get_by_role("tab", name="Library").click()
    _fill(alice, "library-folder", str(app.root / "known"))
    alice.locator("#library-index").click()
    expect(alice.locator("#library-report")).to_contain_text("nobody to name", timeout=120_000)
    app.shot(alice, "31-nobody-to-name")
    alice.get_by_role("tab", name="Chat").click()
    obama = faces_dir / "scenes" / "obama1.jpg"
    alice.locator("#chat-photo input[type=file]").set_input_files(str(obama))
    uploaded = alice.locator("#chat-photo img").first
    expect(uploaded).to_have_attribute("src", re.compile(r"obama1\.jpg$"), timeout=30_000)
    expect(uploaded).to_have_js_property("complete", True)
    assert uploaded.evaluate("img => img.naturalWidth") > 0  # her own upload is served to her
    shared = re.sub(r"^.*?/file=", "", uploaded.get_attribute("src") or "")
    vault = PhotoVault.in_folder(app.home / "vault")
    deadline = time.monotonic() + 30
    while not vault.has("alice", photo_id(obama.read_bytes())) and time.monotonic() < deadline:
        time.sleep(0.2)  # her photo event has put it in her vault
    assert vault.has("alice", photo_id(obama.read_bytes()))

    bob = app.page("bob")
    bob.get_by_role("tab", name="Memory").click()
    bob.locator("#people-refresh").click()
    bob.wait_for_timeout(1500)
    expect(bob.locator("#people-table")).not_to_contain_text("Barack Obama")
    _ask(bob, faces_dir / "scenes" / "two_people.jpg", "Who is on the left?")
    log = bob.locator("#chat-log")
    expect(log).to_contain_text("[1] = Someone Known (person)", timeout=60_000)  # the cluster bob named
    expect(log).not_to_contain_text("Barack Obama")
    expect(log).not_to_contain_text("is a friend")
    drawn = bob.locator("#chat-boxes img").first  # his annotated photo is served to him
    expect(drawn).to_have_js_property("complete", True, timeout=30_000)
    assert drawn.evaluate("img => img.naturalWidth") > 0
    app.shot(bob, "32-bob")

    # Bob, knowing the server path of alice's upload, fetches it and hands it to the chat's photo event.
    assert "/web/uploads/" in shared and Path(shared).is_file()
    with httpx.Client(base_url=app.url, timeout=30) as client:
        client.post("login", data={"username": "bob", "password": "bob-pw"}).raise_for_status()
        assert client.get(f"gradio_api/file={shared}").status_code == 403
        sent = {"data": [{"path": shared, "meta": {"_type": "gradio.FileData"}}], "session_hash": "bob-api"}
        event = client.post("gradio_api/call/new_photo", json=sent).raise_for_status().json()["event_id"]
        stream = client.get(f"gradio_api/call/new_photo/{event}").text
    said = json.loads(stream.split("data: ", 1)[1])[1][0]["content"][0]["text"]  # the chat, refusing
    assert said == "⚠ photo 'obama1.jpg' was not uploaded from this login — upload it again", stream
    assert not vault.has("bob", photo_id(obama.read_bytes()))
    assert {p.name for p in app.shots.iterdir()} >= {"01-memory.png", "04-citation-lights-box.png", "32-bob.png"}


def test_no_model_says_answers_need_one(tmp_path: Path, faces_dir: Path, browser: Browser) -> None:
    """A model that fails to load: the chat still shows recognition and context, and says how to set one."""
    env = {"RCMU_MODEL": str(tmp_path / "no-such-model")}
    for url in start_web(tmp_path / "home", env):
        state = App(url=url, root=tmp_path, home=tmp_path / "home", shots=tmp_path, fake=FakeServer(), browser=browser)
        page = state.page("")
        _ask(page, faces_dir / "scenes" / "two_people.jpg", "Who is on the left?")
        log = page.locator("#chat-log")
        expect(log).to_contain_text("No model answered", timeout=120_000)
        expect(log).to_contain_text("RCMU_MODEL=/path/to/RC-Qwen2VL-2b")
        unknown = re.compile(r"\[[-\d]\] = an unrecognised person .*at \(253,47,409,203\)")  # numbered: issue 23
        expect(log).to_contain_text(unknown)
        state.shot(page, "no-model")
        assert state.outside == []
