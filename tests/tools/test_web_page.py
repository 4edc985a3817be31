"""The web page as a person meets it, in a real headless Chromium against a real `rcmu web`: one-line errors
next to what caused them, Ask that waits for a photo, the question shown at once, forms that reset, a
confirmation before Forget, a warning for what can never be recognised, clusters as cards that survive a
reload, library answers with their photos and boxes, citations by keyboard, axe-core on every tab (before
and after an answer), and a layout that reads at 390 and 1280 pixels wide.

One app (no logins) and one browser serve the module; the tests run in order and build on each other's
memory. Screenshots of each step are written under the module's temporary folder (`screenshots/`).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from rcmu_agent.testing import FakeServer, Recorded, Reply, serve
from tests.tools._web_kit import App, axe_violations, chromium, echo, fill, start_web

pytestmark = pytest.mark.integration  # the web app in chromium

FIRST_TOKEN_DELAY = 3.0  # the stand-in model thinks this long before its first token


def slow_echo(request: Recorded) -> Reply:
    return echo(request, first_delay=FIRST_TOKEN_DELAY)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as one:
        yield one


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, browser: Browser) -> Iterator[App]:
    """`rcmu web` (no logins) answering through a loopback model that waits before its first token; the
    allowed folder holds the scenes and a photo cut short, which indexing must name as skipped."""
    root = tmp_path_factory.mktemp("webpage")
    home, shots = root / "home", root / "screenshots"
    shots.mkdir()
    shutil.copytree(faces_dir / "scenes", root / "scenes")
    (root / "scenes" / "cut-short.jpg").write_bytes((faces_dir / "scenes" / "obama1.jpg").read_bytes()[:2000])
    with serve(FakeServer(responder=slow_echo)) as fake:
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": fake.url, "RCMU_MODEL": "m", "RCMU_ALLOWED_ROOTS": str(root)}
        for url in start_web(home, env):
            state = App(url=url, root=root, home=home, shots=shots, fake=fake, browser=browser)
            yield state
            assert state.outside == []  # the page never left the machine


def _tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(400)


def _clean(page: Page, where: str) -> None:
    """axe-core finds no serious or critical violation on the page as it is now."""
    found = axe_violations(page)
    assert found == [], f"{where}: {found}"


def _one_line(text: str) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    assert "/tmp" not in text and "uploads" not in text, text  # no server path


def _no_error_badge(page: Page) -> None:
    """No Gradio error pop-up and no red "Error" badge left on any component."""
    expect(page.locator(".toast-body")).to_have_count(0)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)


def test_every_tab_passes_axe_before_anything_happens(app: App) -> None:
    page = app.page("", width=1280)
    for tab in ("Chat", "Memory", "Library"):
        _tab(page, tab)
        _clean(page, f"{tab} tab, empty")
        app.shot(page, f"01-{tab.lower()}-empty", full=True)


def test_chat_waits_for_a_photo_and_says_each_refusal_in_one_line(app: App, faces_dir: Path) -> None:
    page = app.page("", width=1280)
    ask, log, question = page.locator("#chat-ask"), page.locator("#chat-log"), page.locator("#chat-question textarea")
    expect(ask).to_be_disabled()
    expect(ask).to_have_text("Ask (upload a photo first)")
    question.fill("Who is this?")
    question.press("Enter")  # Enter still reaches the chat: it says why nothing is asked
    expect(log).to_contain_text("no photo yet — upload one above to ask about it", timeout=30_000)
    app.shot(page, "02-no-photo")

    notes = app.root.parent / "notes.jpg"
    notes.write_text("shopping list: milk, eggs\n")
    corrupt = app.root.parent / "corrupt.jpg"
    corrupt.write_bytes((faces_dir / "scenes" / "two_people.jpg").read_bytes()[:3000])
    for photo, said in (
        (notes, "notes.jpg is not an image rcmu can read — give a JPEG, PNG, WebP, HEIC or AVIF file"),
        (corrupt, "corrupt.jpg is corrupt or truncated — re-export or re-download the photo"),
    ):
        page.locator("#chat-photo input[type=file]").set_input_files(str(photo))
        message = log.get_by_text(said)
        expect(message).to_be_visible(timeout=30_000)
        _one_line(message.inner_text())
        expect(ask).to_be_disabled()
        expect(ask).to_have_text("Ask (this photo was refused)")
        expect(page.locator("#chat-photo img")).to_have_count(0)  # taken off the page: no broken image
        question.fill("Who is this?")
        question.press("Enter")  # asked anyway: said again, never answered without the photo
        expect(log.get_by_text(said)).to_have_count(1 + 1, timeout=30_000)
        _no_error_badge(page)
        app.shot(page, f"03-refused-{photo.stem}")
    assert not [r for r in app.fake.requests], "nothing reached the model"


def _teach(page: Page, name: str, photo: Path | None, category: str = "person", info: str = "") -> None:
    _tab(page, "Memory")
    fill(page, "teach-name", name)
    fill(page, "teach-category", category)
    fill(page, "teach-info", info or f"{name} is a friend")
    if photo is not None:
        page.locator("#teach-photos input[type=file]").set_input_files(str(photo))
    page.locator("#teach-save").click()
    expect(page.locator("#teach-status")).to_contain_text(f"remembered {name}", timeout=60_000)


def test_memory_forms_reset_forget_asks_first_and_unrecognisable_is_warned(
    app: App, faces_dir: Path, shared_data: Path
) -> None:
    page = app.page("", width=1280)
    reference = faces_dir / "reference"
    _teach(page, "Barack Obama", reference / "obama_obama.jpg")
    status = page.locator("#teach-status")
    expect(status).to_contain_text("remembered Barack Obama (person) with 1 photo")
    expect(status).not_to_contain_text("photo(s)")
    expect(status).not_to_contain_text("⚠")  # a person with a face: recognisable
    for elem, value in (("teach-name", ""), ("teach-category", "person"), ("teach-info", "")):
        expect(page.locator(f"#{elem} textarea, #{elem} input").first).to_have_value(value)
    expect(page.locator("#teach-photos")).not_to_contain_text("obama_obama.jpg")
    _teach(page, "Joe Biden", reference / "biden_biden.jpg")

    _teach(page, "Bella", shared_data / "objects" / "chelsea.png", category="pet", info="Bella is our cat")
    expect(status).to_contain_text("Bella (pet) will not be recognised in photos: no image model is configured")
    expect(page.locator("#teach-category input, #teach-category textarea").first).to_have_value("person")
    app.shot(page, "04-pet-warning", full=True)
    _teach(page, "Grandpa", None, info="Grandpa fixed clocks")
    expect(status).to_contain_text("Grandpa has no photo, so will not be recognised in photos")
    table = page.locator("#people-table")
    expect(table).to_contain_text("Grandpa fixed clocks")

    fill(page, "edit-name", "Grandpa")
    page.locator("#edit-forget").click()
    confirm = page.locator("#forget-question")
    expect(confirm).to_contain_text("Forget Grandpa (person) and 0 photos? This cannot be undone.", timeout=30_000)
    app.shot(page, "05-forget-asks", full=True)
    page.locator("#forget-no").click()
    expect(confirm).to_be_hidden()
    expect(page.locator("#edit-status")).to_contain_text("nothing was forgotten")
    expect(table).to_contain_text("Grandpa")
    page.locator("#edit-forget").click()
    page.locator("#forget-yes").click()
    expect(page.locator("#edit-status")).to_contain_text("forgot Grandpa", timeout=30_000)
    expect(table).not_to_contain_text("Grandpa")

    fill(page, "edit-name", "Nobody Here")
    page.locator("#edit-forget").click()  # an unknown name: said under the form, in one line
    expect(page.locator("#edit-status")).to_contain_text("⚠", timeout=30_000)
    _one_line(page.locator("#edit-status").inner_text())
    expect(confirm).to_be_hidden()
    fill(page, "recall-question", "Who is Bella, our cat?")
    page.locator("#recall-question textarea, #recall-question input").first.press("Enter")
    expect(page.locator("#recall-answer")).to_contain_text("Bella is our cat [", timeout=60_000)
    _no_error_badge(page)
    _clean(page, "Memory tab, after teaching and an answer")
    app.shot(page, "06-memory", full=True)


def test_question_shows_at_once_and_citations_work_by_keyboard(app: App, faces_dir: Path) -> None:
    page = app.page("", width=1280)
    _tab(page, "Chat")
    page.locator("#chat-photo input[type=file]").set_input_files(str(faces_dir / "scenes" / "two_people.jpg"))
    ask = page.locator("#chat-ask")
    expect(ask).to_be_enabled(timeout=30_000)
    expect(ask).to_have_text("Ask")
    page.locator("#chat-question textarea").fill("Who is on the left?")
    clicked = time.monotonic()
    ask.click()
    log = page.locator("#chat-log")
    expect(log).to_contain_text("Who is on the left?", timeout=FIRST_TOKEN_DELAY * 1000)
    expect(log).to_contain_text("looking at the photo…", timeout=FIRST_TOKEN_DELAY * 1000)
    shown = time.monotonic() - clicked
    assert "As far as I know" not in log.inner_text()  # before the first token
    assert shown < FIRST_TOKEN_DELAY, shown
    app.shot(page, "07-looking")
    expect(log).to_contain_text("Joe Biden is a friend [2].", timeout=60_000)
    expect(log).not_to_contain_text("looking at the photo…")
    _no_error_badge(page)
    _clean(page, "Chat tab, after an answer")
    app.shot(page, "08-answer", full=True)

    # keyboard only: Tab from the top of the page to the first citation, then through each — once the
    # boxes have arrived (the annotated photo renders after the answer's text; on a loaded machine, later)
    boxes = page.locator("#chat-boxes")
    expect(boxes).to_contain_text("[2] Joe Biden", timeout=30_000)
    expect(boxes.locator("img.mask")).to_have_count(2, timeout=30_000)
    page.locator("body").focus()
    seen: list[str] = []
    for _ in range(120):
        page.keyboard.press("Tab")
        number = page.evaluate(
            "() => document.activeElement.classList.contains('rcmu-cite') ? document.activeElement.dataset.n : null"
        )
        if number is not None:
            seen.append(number)
            expect(boxes.locator("img.mask.active")).to_have_count(1)  # its box, and only it, is lit
            lit = boxes.locator("img.mask").nth(int(number) - 1)
            expect(lit).to_have_class(re.compile(r"\bactive\b"))
            if number == "1" and "1" not in seen[:-1]:
                page.keyboard.press("Enter")  # pins [1]
                expect(page.locator(":focus")).to_have_attribute("aria-pressed", "true")
                app.shot(page, "09-keyboard-citation")
        elif seen and page.evaluate("() => !document.activeElement.closest('#chat-log')"):
            break
    assert {"1", "2"} <= set(seen), seen
    expect(boxes.locator("img.mask").nth(0)).to_have_class(re.compile(r"\bactive\b"))  # pinned stays lit


def test_library_cards_skips_errors_and_answers_with_photos(app: App, faces_dir: Path) -> None:
    page = app.page("", width=1280)
    _tab(page, "Library")
    report, index = page.locator("#library-report"), page.locator("#library-index")
    fill(page, "library-folder", "/etc")
    index.click()
    expect(report).to_contain_text("is outside the allowed folders — pick a folder inside them", timeout=30_000)
    _one_line(report.inner_text().replace("/etc", ""))
    box = index.bounding_box()
    assert box is not None
    on_top = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y).closest('#library-index') !== null",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert on_top, "something covers the Index button"
    _no_error_badge(page)
    app.shot(page, "10-library-error")

    fill(page, "library-folder", str(app.root / "scenes"))
    index.click()
    expect(report).to_contain_text("3 photos indexed", timeout=120_000)
    expect(report).to_contain_text("skipped cut-short.jpg")
    _no_error_badge(page)  # the earlier error left nothing behind
    cards = page.locator("#library-clusters .rcmu-card")
    expect(cards.first).to_be_visible(timeout=30_000)
    _cards_readable(page)
    app.shot(page, "11-cards", full=True)
    before = cards.all_inner_texts()

    page.reload()  # the clusters are still there
    _tab(page, "Library")
    expect(cards).to_have_count(len(before), timeout=30_000)
    assert cards.all_inner_texts() == before
    first = re.search(r"Cluster (\d+)", before[0])
    assert first
    page.locator("#library-name-id input").click()
    page.get_by_role("option", name=re.compile(rf"^cluster {first.group(1)} \(1 face\)$")).click()
    fill(page, "library-name", "Someone Known")
    page.locator("#library-name-go").click()
    expect(page.locator("#library-edited")).to_contain_text("(1 face)", timeout=30_000)
    fill(page, "library-folder", str(app.root / "scenes"))
    index.click()  # again: unchanged photos, and the file cut short named again
    expect(report).to_contain_text("0 new photos, 3 unchanged, 1 skipped", timeout=120_000)
    expect(report).to_contain_text("skipped cut-short.jpg")

    fill(page, "library-question", "When was I with Someone Known?")
    page.locator("#library-ask").click()
    answer = page.locator("#library-answer")
    expect(answer).to_contain_text("looking at your photos…", timeout=10_000)
    expect(answer.locator("figure img")).not_to_have_count(0, timeout=60_000)
    _library_boxes(page, faces_dir)
    _clean(page, "Library tab, after an answer")
    app.shot(page, "12-library-answer", full=True)


def _cards_readable(page: Page) -> None:
    """Each card shows its id and its face count inside its own edges, in the page's viewport width."""
    for card in page.locator("#library-clusters .rcmu-card").all():
        expect(card.locator("h4")).to_have_text(re.compile(r"^Cluster \d+"))
        expect(card.locator("p").first).to_have_text(re.compile(r"^(1 face|([02-9]|\d\d+) faces)$"))
        inside = card.evaluate(
            """(card) => [...card.querySelectorAll('h4, p')].every((el) => {
                const a = el.getBoundingClientRect(), b = card.getBoundingClientRect();
                return a.height > 0 && a.top >= b.top && a.bottom <= b.bottom + 1 && a.right <= b.right + 1;
            })"""
        )
        assert inside, card.inner_text()


def _library_boxes(page: Page, faces_dir: Path) -> None:
    """The cited photo's boxes sit at the photo's own coordinates, each cited region is listed once, and a
    citation reached by keyboard lights its box."""
    answer = page.locator("#library-answer")
    cites = answer.locator("button.rcmu-cite")
    numbers = sorted({int(n) for n in cites.evaluate_all("(all) => all.map((c) => c.dataset.n)")})
    assert numbers, answer.inner_text()
    listed = answer.locator(".rcmu-cited li").all_inner_texts()
    assert [int(re.match(r"\[(\d+)\]", t).group(1)) for t in listed] == numbers, listed  # type: ignore[union-attr]
    known_at = re.search(r"\[\d+\] Someone Known in (\S+) at \((\d+), (\d+), \d+, \d+\)", " ".join(listed))
    assert known_at, listed  # in the photo's own pixels, not the collage's
    name, x1, y1 = known_at.group(1), int(known_at.group(2)), int(known_at.group(3))
    with Image.open(faces_dir / "scenes" / name) as photo:
        width, height = photo.size
    figure = answer.locator("figure", has_text=name)
    known = figure.locator(".rcmu-box", has_text="Someone Known").first
    style = known.get_attribute("style") or ""
    left, top = (float(v) for v in re.findall(r"(?:left|top):([\d.]+)%", style))
    assert abs(left - 100 * x1 / width) < 0.1 and abs(top - 100 * y1 / height) < 0.1, style
    n = known.get_attribute("data-n")
    button = answer.locator(f"button.rcmu-cite[data-n='{n}']").first
    button.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # reached by keyboard
    expect(known).to_have_class(re.compile(r"\blit\b"))
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-pressed", "true")


@pytest.mark.parametrize("width", [390, 1280])
def test_layout_reads_at_phone_and_desktop_width(app: App, width: int) -> None:
    page = app.page("", width=width, height=900)
    for tab in ("Chat", "Memory", "Library"):
        _tab(page, tab)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= width + 1, f"{tab} at {width}px scrolls sideways ({wide}px)"
        _clean(page, f"{tab} tab at {width}px")
        app.shot(page, f"13-{tab.lower()}-{width}", full=True)
    _tab(page, "Memory")
    table = page.locator("#people-table")
    expect(table).to_contain_text("Barack Obama", timeout=30_000)
    cut = table.evaluate(
        """(t) => [...t.querySelectorAll('th, td')].filter((c) => {
            const r = c.getBoundingClientRect();
            if (r.width === 0 || !c.innerText.trim()) return false;  // Gradio's hidden measuring cells
            let broken = false;  // a header word split over two lines
            const texts = document.createTreeWalker(c, NodeFilter.SHOW_TEXT);
            for (let node = texts.nextNode(); node && c.tagName === 'TH'; node = texts.nextNode()) {
                if (!node.nodeValue.trim()) continue;
                const lines = document.createRange();
                lines.selectNodeContents(node);
                broken ||= new Set([...lines.getClientRects()].map((q) => Math.round(q.top))).size > 1;
            }
            return r.right > window.innerWidth + 1 || c.scrollWidth > c.clientWidth + 2 || broken;
        }).map((c) => `${c.tagName} "${c.innerText}" ${c.scrollWidth}>${c.clientWidth}`)"""
    )
    assert cut == [], f"people table cut off at {width}px: {cut}"
