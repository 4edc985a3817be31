"""The real Agent Chat UI in headless Chromium against `langgraph dev` with the shipped auth config.

Agent Chat UI is a GitHub repository, not an npm package (create-agent-chat-app scaffolds an old copy,
without uploads), and CI reaches package registries only, so this runs against a local checkout instead
of in the test suite; tests/test_agent_chat_ui.py sends its requests byte for byte in CI.

    git clone https://github.com/langchain-ai/agent-chat-ui && (cd agent-chat-ui && npm install)
    python examples/agent_chat_ui_e2e.py --checkout agent-chat-ui --out /tmp/chat-ui-shots

It teaches alice Barack Obama and Joe Biden (reference photos from the shared data), starts a fake
OpenAI-compatible model (`rcmu_agent.testing`) with a fixed cited reply, `langgraph dev` with
examples/langgraph-auth.json, and `next dev` in the checkout; then, as a person would: fills in the
deployment URL, the graph id and the token in the API-key field, attaches two_people.jpg, asks, and waits
for the streamed answer and the `cited_photo` drawing under it; points at `[2]` and checks its box lights;
asks a follow-up without a photo and checks its drawing shows the thread's picture.
Screenshots go to --out at each step; the exit code is 0 when every check held.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
REPLY = "Barack Obama [1] is on the left; Joe Biden [2] is on the right."


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5, follow_redirects=True).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, required=True, help="agent-chat-ui folder with node_modules")
    parser.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--ui-port", type=int, default=3000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from playwright.sync_api import sync_playwright

    from rcmu_agent import Assistant, Settings
    from rcmu_agent.testing import Reply, serve
    from tests._langgraph_dev import NO_MODEL, start_langgraph_dev

    work = Path(tempfile.mkdtemp(prefix="chat-ui-"))
    home = work / "home"
    alice = Assistant(Settings(home=home, user="alice", **NO_MODEL))
    alice.remember("Barack Obama", info="44th president", photos=[args.faces / "reference" / "obama_obama.jpg"])
    alice.remember("Joe Biden", info="46th president", photos=[args.faces / "reference" / "biden_biden.jpg"])
    photo = args.faces / "scenes" / "two_people.jpg"

    checks: dict[str, bool] = {}
    with serve() as fake:
        fake.default = Reply(text=REPLY, token_delay=0.05)
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": fake.url, "RCMU_MODEL": "m"}
        (work / "server").mkdir()
        server = start_langgraph_dev(work / "server", home, env)
        api = next(server)
        ui_url = f"http://localhost:{args.ui_port}"
        next_log = (args.out / "next.log").open("w")
        ui = subprocess.Popen(
            ["npx", "next", "dev", "-p", str(args.ui_port)],
            cwd=args.checkout,
            env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1"},
            stdout=next_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # npx, next and next-server: stopped together below
        )
        try:
            _wait(ui_url, 300)
            # the component's bundle is built by langgraph dev at start: wait for it as the UI would ask
            _wait_bundle(api)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                console: list[str] = []
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                started = time.monotonic()
                page.goto(ui_url, timeout=300_000)
                page.fill("#apiUrl", api)
                page.fill("#assistantId", "rcmu")
                page.fill("#apiKey", "token-alice")
                page.screenshot(path=str(args.out / "1-login.png"))
                page.get_by_role("button", name="Continue").click()
                page.wait_for_selector("textarea", timeout=120_000)
                page.set_input_files("#file-input", str(photo))
                page.fill("textarea", "Who is on the left?")
                page.screenshot(path=str(args.out / "2-question.png"))
                page.get_by_role("button", name="Send").click()
                answer = page.get_by_text("Joe Biden [2] is on the right.")
                answer.wait_for(timeout=180_000)
                checks["streamed answer shown"] = True
                drawing = page.locator('[data-rcmu="cited-photo"]')  # inside the component's shadow root
                drawing.wait_for(timeout=120_000)
                checks["photo drawn under the answer"] = drawing.locator("img").evaluate(
                    "img => img.complete && img.naturalWidth > 0"
                )
                chips = drawing.locator("[data-cite]").all_inner_texts()
                checks["numbered, named chips in order"] = [c.split() for c in chips] == [
                    ["[1]", "Barack", "Obama"],
                    ["[2]", "Joe", "Biden"],
                ]
                checks["two boxes"] = drawing.locator("g[data-region]").count() == 2
                drawing.scroll_into_view_if_needed()
                page.screenshot(path=str(args.out / "3-answer.png"), full_page=True)
                drawing.locator('[data-cite="2"]').hover()
                checks["[2] lights its box"] = (
                    drawing.locator('g[data-region="2"]').get_attribute("data-lit") == "true"
                    and drawing.locator('g[data-region="1"]').get_attribute("opacity") == "0.25"
                )
                drawing.screenshot(path=str(args.out / "4-hover-2.png"))
                # a follow-up without a photo: drawn again, its picture taken from the first drawing's
                page.fill("textarea", "And who is on the right?")
                page.get_by_role("button", name="Send").click()
                drawings = page.locator('[data-rcmu="cited-photo"]')
                page.wait_for_function(
                    "() => document.querySelectorAll('[id^=child-shadow-]').length >= 2", timeout=120_000
                )
                drawings.nth(1).wait_for(timeout=120_000)
                checks["follow-up drawn with the thread's picture"] = (
                    drawings.nth(1)
                    .locator("img")
                    .evaluate("img => img.complete && img.naturalWidth > 0 && img.src.startsWith('data:image/jpeg')")
                )
                page.screenshot(path=str(args.out / "5-follow-up.png"), full_page=True)
                print(f"answer and drawing shown {time.monotonic() - started:.1f} s after opening the page")
                errors = [c for c in console if c.startswith("error")]
                print("console errors:", errors or "none")
                browser.close()
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=30)
            next_log.close()
            for _ in server:
                pass
    for name, ok in checks.items():
        print(f"{'ok ' if ok else 'FAIL'} {name}")
    print(f"screenshots in {args.out}")
    return 0 if checks and all(checks.values()) else 1


def _wait_bundle(api: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if httpx.post(f"{api}/ui/rcmu", json={"name": "cited_photo"}, timeout=10).status_code == 200:
            return
        time.sleep(1)
    raise SystemExit("langgraph dev built no UI bundle within 180 s (is npx on PATH and the npm registry reachable?)")


if __name__ == "__main__":
    raise SystemExit(main())
