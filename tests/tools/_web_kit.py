"""What the web app's browser tests share: `rcmu web` started as a real process, Debian's Chromium driven
through Playwright with every request outside 127.0.0.1 refused, a stand-in model that streams its
answer, screenshots, and axe-core run inside the page.

axe-core comes from the `axe-playwright-python` package, which bundles its `axe.min.js` (only that file
is used: it is injected into the page and `axe.run` reports what it finds).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from rcmu_agent.testing import FakeServer, Recorded, Reply

__all__ = ["App", "axe_violations", "chromium", "echo", "fill", "start_web"]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_ENTRY = re.compile(r"^\[(\d+)\]: The information of the (.+?)(?: located at .+? in the image)?: (.+)\.$")


def echo(request: Recorded, *, first_delay: float = 0.0) -> Reply:
    """A stand-in model: one sentence per context entry, each cited; slow enough to watch it stream."""
    content = request.body["messages"][-1]["content"]
    text = next(part["text"] for part in content if part["type"] == "text")
    cited = [m for line in text.split("\n") if (m := _ENTRY.match(line))]
    if not cited:
        return Reply(text="Cannot be answered. The information does not say.")
    answer = " ".join(f"As far as I know, {m.group(3)} [{m.group(1)}]." for m in cited)
    return Reply(text=answer, token_delay=0.12, delay=first_delay)


@dataclass
class App:
    url: str
    root: Path  # an allowed folder, holding the rcmu home
    home: Path
    shots: Path
    fake: FakeServer
    browser: Browser
    outside: list[str] = field(default_factory=list)

    def page(self, login: str, width: int = 1400, height: int = 1000) -> Page:
        """A fresh browser context logged in as `login`; requests leaving 127.0.0.1 are refused and recorded."""

        def only_local(route: Any) -> None:
            url = route.request.url
            if url.startswith(("http://127.0.0.1", "data:", "blob:")):
                route.continue_()
            else:
                self.outside.append(url)
                route.abort()

        context = self.browser.new_context(viewport={"width": width, "height": height})
        context.route("**/*", only_local)
        page = context.new_page()
        page.goto(self.url)
        if login:
            page.get_by_label("username").fill(login)
            page.get_by_label("password").fill(f"{login}-pw")
            page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Memory").wait_for(timeout=60_000)
        return page

    def shot(self, page: Page, name: str, *, full: bool = False) -> None:
        page.screenshot(path=self.shots / f"{name}.png", full_page=full)


def start_web(home: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`rcmu web` on a free loopback port with `env` over the test's own; yields its URL, stops it after."""
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
    log_path = home.parent / f"web-{port}.log"
    log = log_path.open("w")
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
                raise RuntimeError(log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright downloads no browser of its own)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def fill(page: Page, elem: str, text: str) -> None:
    page.locator(f"#{elem} textarea, #{elem} input").first.fill(text)


def _axe_source() -> str:
    try:
        from importlib.resources import files

        return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        pytest.fail("axe-core is missing — pip install axe-playwright-python (it bundles axe.min.js)")


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of `impacts` on the page as it is now: rule, impact and the first nodes."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=_axe_source())
    found: list[dict[str, Any]] = page.evaluate(
        """async (impacts) => {
            const result = await axe.run(document, {resultTypes: ['violations']});
            return result.violations.filter((v) => impacts.includes(v.impact)).map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ' :: ' + n.html.slice(0, 200)),
            }));
        }""",
        list(impacts),
    )
    return found


def wait_for(page: Page, selector: str, text: str | re.Pattern[str], timeout: float = 60_000) -> None:
    expect(page.locator(selector)).to_contain_text(text, timeout=timeout)
