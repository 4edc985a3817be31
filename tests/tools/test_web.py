"""`rcmu web` as a real process, driven in a real headless Chromium (Debian's, through Playwright).

Every request the page makes is checked: anything leaving 127.0.0.1 fails the test (the page must work
offline). Screenshots of each step are written under the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from rcmu_agent.testing import Reply, serve

pytestmark = pytest.mark.integration  # the web app in chromium

REPLY = "Barack Obama [1] is on the left; Joe Biden [2] is on the right."
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _start(home: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    full = {
        **os.environ,
        "RCMU_HOME": str(home),
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    rcmu = str(Path(sys.executable).with_name("rcmu"))
    log = (home.parent / f"web-{port}.log").open("w")
    proc = subprocess.Popen([rcmu, "web", "--port", str(port), *args], env=full, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url, timeout=2).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((home.parent / f"web-{port}.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture()
def browser_page(tmp_path: Path) -> Iterator[tuple[Page, list[str]]]:
    """A page in headless Chromium whose every non-local request is refused and recorded."""
    outside: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.route("**/*", only_local)
        yield context.new_page(), outside
        browser.close()


def _fill(page: Page, elem: str, text: str) -> None:
    page.locator(f"#{elem} textarea, #{elem} input").first.fill(text)


def _teach(page: Page, name: str, photo: Path) -> None:
    page.get_by_role("tab", name="Memory").click()
    _fill(page, "teach-name", name)
    _fill(page, "teach-info", f"{name} is a friend")
    page.locator("#teach-photos input[type=file]").set_input_files(str(photo))
    page.locator("#teach-save").click()
    expect(page.locator("#teach-status")).to_contain_text(f"remembered {name}", timeout=60_000)


def _ask(page: Page, photo: Path | None, question: str) -> None:
    page.get_by_role("tab", name="Chat").click()
    if photo is not None:
        page.locator("#chat-photo input[type=file]").set_input_files(str(photo))
        page.wait_for_timeout(1500)  # the upload lands before the question goes
    page.locator("#chat-question textarea").fill(question)
    page.locator("#chat-ask").click()


def test_teach_ask_and_errors_in_the_browser(
    tmp_path: Path, faces_dir: Path, browser_page: tuple[Page, list[str]]
) -> None:
    page, outside = browser_page
    shots = tmp_path / "screenshots"
    reference, scene = faces_dir / "reference", faces_dir / "scenes" / "two_people.jpg"
    with serve() as fake:
        fake.default = Reply(text=REPLY, token_delay=0.02)
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": fake.url, "RCMU_MODEL": "m"}
        for url in _start(tmp_path / "home", env):
            page.goto(url)
            _teach(page, "Barack Obama", reference / "obama_obama.jpg")
            _teach(page, "Joe Biden", reference / "biden_biden.jpg")
            expect(page.locator("#people-table")).to_contain_text("Joe Biden")
            page.screenshot(path=shots / "1-memory.png")
            page.locator("#teach-photos input[type=file]").set_input_files(str(scene))
            page.locator("#teach-check").click()  # a reference photo with two faces gets a warning
            expect(page.locator("#teach-status")).to_contain_text("holds 2 faces", timeout=60_000)
            page.screenshot(path=shots / "2-check-photos.png")

            _ask(page, scene, "Who is on the left?")
            log = page.locator("#chat-log")
            expect(log).to_contain_text(REPLY, timeout=60_000)
            expect(log).to_contain_text("[1] = Barack Obama (person) at (253,47,409,203)")
            labels = page.locator("#chat-boxes")
            expect(labels).to_contain_text("[1] Barack Obama")
            expect(labels).to_contain_text("[2] Joe Biden")
            page.screenshot(path=shots / "3-answer.png")
            _ask(page, None, "And who is on the right?")  # a follow-up: same photo, no new upload
            expect(log.get_by_text("[2] = Joe Biden (person) at (778,57,965,243)")).to_have_count(2, timeout=60_000)
            assert fake.requests[-1].body["messages"][0]["content"][0]["type"] == "image_url"

            corrupt = tmp_path / "corrupt.jpg"
            corrupt.write_bytes(scene.read_bytes()[:3000])
            _ask(page, corrupt, "Who is this?")
            expect(page.get_by_text("corrupt.jpg is corrupt or truncated")).to_be_visible(timeout=60_000)
            assert "uploads" not in page.get_by_text("corrupt.jpg is corrupt").inner_text()
            page.screenshot(path=shots / "4-corrupt.png")
    assert outside == []
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-memory.png",
        "2-check-photos.png",
        "3-answer.png",
        "4-corrupt.png",
    ]


def test_logins_have_separate_memories_and_no_model_says_so(
    tmp_path: Path, faces_dir: Path, browser_page: tuple[Page, list[str]]
) -> None:
    page, outside = browser_page
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"alice": "alice-pw", "bob": "bob-pw"}))
    scene = faces_dir / "scenes" / "two_people.jpg"
    for url in _start(tmp_path / "home", {}, "--auth", str(users), "--context-only"):
        for login, teach in (("alice", True), ("bob", False)):
            page.context.clear_cookies()
            page.goto(url)
            page.get_by_label("username").fill(login)
            page.get_by_label("password").fill(f"{login}-pw")
            page.get_by_role("button", name="Login").click()
            page.get_by_role("tab", name="Memory").wait_for(timeout=60_000)
            if teach:
                _teach(page, "Barack Obama", faces_dir / "reference" / "obama_obama.jpg")
            page.get_by_role("tab", name="Memory").click()
            page.locator("#people-refresh").click()
            table = page.locator("#people-table")
            if teach:
                expect(table).to_contain_text("Barack Obama", timeout=30_000)
            else:
                page.wait_for_timeout(2000)
                expect(table).not_to_contain_text("Barack Obama")
            _ask(page, scene, "Who is on the left?")
            log = page.locator("#chat-log")
            expect(log).to_contain_text("No model answered", timeout=60_000)
            if teach:
                expect(log).to_contain_text("Barack Obama")
            else:
                expect(log).not_to_contain_text("Barack Obama")
                expect(log).not_to_contain_text("is a friend")
            page.screenshot(path=tmp_path / f"{login}.png")
    assert outside == []


def test_library_tab_indexes_names_and_searches(
    tmp_path: Path, faces_dir: Path, browser_page: tuple[Page, list[str]]
) -> None:
    page, outside = browser_page
    env = {"RCMU_ALLOWED_ROOTS": str(faces_dir)}
    for url in _start(tmp_path / "home", env, "--context-only"):
        page.goto(url)
        page.get_by_role("tab", name="Library").click()
        _fill(page, "library-folder", "/etc")
        page.locator("#library-index").click()
        expect(page.get_by_text("outside the allowed folders")).to_be_visible(timeout=30_000)

        _fill(page, "library-folder", str(faces_dir / "scenes"))
        page.locator("#library-index").click()
        expect(page.locator("#library-report")).to_contain_text("3 photos indexed", timeout=120_000)
        clusters = page.locator("#library-clusters")
        expect(clusters).to_contain_text("cluster", timeout=30_000)
        page.screenshot(path=tmp_path / "library.png")

        first = clusters.inner_text().split("cluster ", 1)[1].split(":", 1)[0]
        page.get_by_label("Cluster", exact=True).fill(first)
        page.get_by_label("Name them").fill("Someone Known")
        page.get_by_role("button", name="Name").click()
        expect(page.locator("#library-report")).to_contain_text("Someone Known", timeout=30_000)

        _fill(page, "search-people", "Someone Known")
        page.locator("#search-go").click()
        expect(page.locator("#search-hits")).to_contain_text("Someone Known", timeout=30_000)
        page.screenshot(path=tmp_path / "search.png")
    assert outside == []
