"""Naming an unknown face in the web app, in a real headless Chromium against a real `rcmu web --auth`:
alice asks about a photo nobody in her memory is in, names region [1] from its legend button (by
keyboard), checks the crop card, confirms, and the chat names Barack Obama at [1]; a typed "[2] is Joe
Biden" shows the same card, and Cancel writes nothing; Edit saves the form's changes; a box with no face is
refused in one line. axe-core runs with the card on the page.
Screenshots are written under the test's temporary folder (`screenshots/`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from rcmu_agent.testing import FakeServer, serve
from tests.tools._web_kit import App, axe_violations, chromium, echo, fill, start_web

pytestmark = pytest.mark.integration  # the web app in chromium


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[App]:
    """`rcmu web --auth` for alice, with an empty memory, answering through the loopback echo model."""
    root = tmp_path_factory.mktemp("webteach")
    home, shots = root / "home", root / "screenshots"
    shots.mkdir()
    shutil.copytree(faces_dir / "scenes", root / "scenes")
    users = root.parent / f"{root.name}-users.json"
    users.write_text(json.dumps({"alice": "alice-pw"}))
    with chromium() as browser, serve(FakeServer(responder=echo)) as fake:
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": fake.url, "RCMU_MODEL": "m", "RCMU_ALLOWED_ROOTS": str(root)}
        for url in start_web(home, env, "--auth", str(users)):
            state = App(url=url, root=root, home=home, shots=shots, fake=fake, browser=browser)
            yield state
            assert state.outside == []  # the page never left the machine


def _people(app: App) -> str:
    """alice's memory as a fresh page's Memory tab lists it."""
    page = app.page("alice")
    page.get_by_role("tab", name="Memory").click()
    table = page.locator("#people-table")
    table.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    text = table.inner_text()
    page.context.close()
    return text


def _card(page: Page, who: str, region: int) -> None:
    card = page.locator("#name-card .rcmu-proposal")
    expect(card).to_contain_text(f"Remember {who}?", timeout=60_000)
    expect(card).to_contain_text(f"region [{region}]")
    expect(card.locator("img")).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    for name in ("Confirm", "Edit", "Cancel"):
        expect(page.locator("#name-decide").get_by_role("button", name=name, exact=True)).to_be_visible()


def test_click_an_unknown_face_name_it_confirm_and_see_it_named(app: App, faces_dir: Path) -> None:
    page = app.page("alice", width=1400, height=1300)
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-photo input[type=file]").set_input_files(str(app.root / "scenes" / "two_people.jpg"))
    expect(page.locator("#chat-ask")).to_be_enabled(timeout=30_000)
    fill(page, "chat-question", "Who is in the photo?")
    page.locator("#chat-ask").click()
    boxes, log, panel = page.locator("#chat-boxes"), page.locator("#chat-log"), page.locator("#name-panel")
    for n in (1, 2):  # both faces unknown, each a numbered button in the photo's legend
        expect(boxes.get_by_role("button", name=f"[{n}] unknown person")).to_be_visible(timeout=60_000)
    expect(panel).to_be_visible()
    expect(panel.get_by_role("radio")).to_have_count(2)
    app.shot(page, "01-unknown-faces")

    page.locator("#name-propose").click()  # nothing chosen yet: one line saying what to do
    status = page.locator("#name-status")
    expect(status).to_contain_text("no region is chosen — click an unknown [n] under the photo", timeout=30_000)
    assert "\n" not in status.inner_text().strip()

    legend = boxes.get_by_role("button", name="[1] unknown person")
    legend.focus()
    page.keyboard.press("Enter")  # the legend button by keyboard chooses [1]
    expect(panel.get_by_role("radio", name="[1] unknown person")).to_be_checked(timeout=30_000)
    fill(page, "name-name", "Barack Obama")
    fill(page, "name-info", "the 44th president")
    page.locator("#name-propose").click()
    _card(page, "Barack Obama", 1)
    expect(page.locator("#name-card")).to_contain_text("the 44th president")
    expect(log).to_contain_text("[1] is Barack Obama; the 44th president")
    found = axe_violations(page)
    assert found == [], f"the proposal card: {found}"
    app.shot(page, "02-proposal-card", full=True)
    page.set_viewport_size({"width": 390, "height": 900})  # a phone: the card fits, nothing scrolls sideways
    page.locator("#name-card").scroll_into_view_if_needed()
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    app.shot(page, "02-proposal-card-390")
    page.set_viewport_size({"width": 1400, "height": 1300})

    page.locator("#name-confirm").click()
    expect(log).to_contain_text("Remembered Barack Obama (person) from region [1]", timeout=60_000)
    expect(log).to_contain_text("[1] Barack Obama; [2] an unrecognised person")
    expect(boxes.get_by_role("button", name="[1] Barack Obama")).to_be_visible()
    expect(page.locator("#name-decide")).to_be_hidden()
    expect(panel.get_by_role("radio")).to_have_count(1)  # only [2] is left to name
    app.shot(page, "03-confirmed", full=True)
    fill(page, "chat-question", "Who is on the left?")  # the next answer names him at [1]
    page.locator("#chat-ask").click()
    expect(log).to_contain_text("As far as I know, Barack Obama, the 44th president [1].", timeout=60_000)

    fill(page, "chat-question", "[2] is Joe Biden")  # typed teaching: the same card, then Cancel
    page.locator("#chat-ask").click()
    _card(page, "Joe Biden", 2)
    expect(page.locator("#name-name input, #name-name textarea").first).to_have_value("Joe Biden")  # Edit's start
    app.shot(page, "04-typed-card", full=True)
    fill(page, "chat-question", "no")  # typed, a "no" answers the card as Cancel would
    page.locator("#chat-ask").click()
    expect(log).to_contain_text("Nothing changed: Joe Biden (person) was not remembered.", timeout=60_000)
    expect(page.locator("#name-card .rcmu-proposal")).to_have_count(0)
    app.shot(page, "05-typed-no", full=True)

    expect(panel.get_by_role("radio", name="[2] unknown person")).to_be_checked()  # the one left: already chosen
    fill(page, "name-name", "Joe Biden")
    page.locator("#name-propose").click()
    _card(page, "Joe Biden", 2)
    page.locator("#name-cancel").click()
    expect(log.get_by_text("Nothing changed: Joe Biden (person) was not remembered.")).to_have_count(2, timeout=60_000)
    expect(page.locator("#name-card .rcmu-proposal")).to_have_count(0)
    app.shot(page, "05-cancelled", full=True)

    listed = _people(app)
    assert "Barack Obama" in listed and "Joe Biden" not in listed, listed

    fill(page, "name-name", "Joe")  # Edit: the form's changes, then saved
    page.locator("#name-propose").click()
    _card(page, "Joe", 2)
    fill(page, "name-name", "Joe Biden")
    fill(page, "name-info", "the 46th president")
    page.locator("#name-edit").click()
    expect(log).to_contain_text("Remembered Joe Biden (person) from region [2]", timeout=60_000)
    expect(boxes.get_by_role("button", name="[2] Joe Biden")).to_be_visible()
    expect(panel).to_be_hidden()  # nobody is left to name
    app.shot(page, "06-edited", full=True)
    assert "Joe Biden" in _people(app)

    page.locator("#chat-regions textarea").fill("0,330,180,520:person")  # a box of her own, on a sleeve: no face
    fill(page, "chat-question", "Who is <region1>?")
    page.locator("#chat-ask").click()
    expect(panel.get_by_role("radio")).to_have_count(1, timeout=60_000)
    fill(page, "name-name", "Nobody")
    page.locator("#name-propose").click()
    expect(status).to_contain_text("no face in region [1], so it cannot be remembered as a person — ", timeout=60_000)
    assert "\n" not in status.inner_text().strip() and "Traceback" not in page.content(), status.inner_text()
    expect(page.locator("#name-card .rcmu-proposal")).to_have_count(0)
    app.shot(page, "07-no-face", full=True)
