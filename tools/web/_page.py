"""What the whole web page shares: its look (theme, CSS), its script (citations, accessibility fix-ups)
and how any action's error is said — one line, in the page, next to the control that caused it.

Gradio's own error pop-ups sit over the top right of the page (the Library tab's Index button) and leave a
red "Error" badge on the outputs; an error here is instead the value of the action's own status line, so
nothing is covered and nothing lingers once the next action succeeds.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from rcmu_agent.errors import RcmuError

__all__ = ["PAGE_CSS", "PAGE_JS", "THEME", "WEB_FIXES", "count", "for_the_page", "page_text", "said", "shown_at"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

# Gradio's default orange and red fail WCAG contrast with white text (2.8:1); the 700 shades pass (5:1 and more),
# and the greys Gradio uses for secondary text ("- or -" in an upload box) are darkened the same way.
THEME = gr.themes.Default(
    primary_hue="orange", font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
).set(
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_text_color="white",
    button_cancel_background_fill="#b91c1c",
    button_cancel_background_fill_hover="#991b1b",
    button_cancel_text_color="white",
    body_text_color_subdued="*neutral_600",
    block_label_text_color="*neutral_700",
)

PAGE_CSS = """
.rcmu-cite { cursor: pointer; text-decoration: underline dotted; font-weight: 600; border-radius: 3px; }
.rcmu-cite:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 1px; }
button.rcmu-cite { background: none; border: none; padding: 0 1px; font: inherit; color: inherit; }
.rcmu-status p { margin: 0; }
.rcmu-status, .rcmu-status .prose { overflow: visible !important; max-height: none !important; }
button[role="tab"].selected { color: #c2410c !important; }
.rcmu-cards { display: flex; flex-wrap: wrap; gap: 12px; list-style: none; padding: 0; margin: 0; }
.rcmu-card { width: 150px; border: 1px solid #d4d4d8; border-radius: 8px; padding: 8px; background: #fff; }
.rcmu-card img { width: 100%; aspect-ratio: 1; object-fit: cover; border-radius: 4px; display: block; }
.rcmu-card h4 { display: block; margin: 6px 0 2px; font-size: 1rem; }
.rcmu-card p { display: block; margin: 0; font-size: 0.9rem; color: #3f3f46; overflow-wrap: anywhere; }
.rcmu-figures { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.rcmu-figure { margin: 0; max-width: min(100%, 560px); }
.rcmu-photo { position: relative; display: inline-block; line-height: 0; }
.rcmu-photo img { max-width: 100%; height: auto; display: block; }
.rcmu-box { position: absolute; border: 3px solid #15803d; box-sizing: border-box; }
.rcmu-box span { position: absolute; left: -3px; top: -1.6em; line-height: 1.4; background: #15803d; color: #fff;
  font-size: 0.8rem; padding: 0 4px; white-space: nowrap; border-radius: 3px 3px 0 0; }
.rcmu-box.lit { border-color: #1d4ed8; border-width: 5px; outline: 3px solid #fff; z-index: 2; }
.rcmu-box.lit span { background: #1d4ed8; }
.rcmu-figure figcaption { font-size: 0.9rem; margin-top: 4px; line-height: 1.4; }
#people-table { overflow-x: auto; }
#people-table table { table-layout: auto; }
#people-table th, #people-table td { word-break: normal !important; overflow-wrap: break-word; }
@media (max-width: 600px) {
  #people-table { font-size: 0.75rem; }
  #people-table th, #people-table td { padding: 4px !important; font-size: 0.75rem !important; }
  #people-table td * { font-size: 0.75rem !important; }
  #people-table th * { padding-left: 0 !important; padding-right: 0 !important; }
  #people-table .cell-menu-button { display: none; }  /* the ⋮ menu: room for the header word */
  #people-table .header.text { word-break: normal !important; overflow-wrap: normal !important; }
}
.rcmu-proposal { display: flex; gap: 12px; align-items: flex-start; border: 1px solid #d4d4d8; border-radius: 8px;
  padding: 10px; background: #fff; }
.rcmu-proposal img { width: 120px; height: auto; border-radius: 4px; flex: none; }
.rcmu-proposal h4 { margin: 0 0 6px; font-size: 1rem; }
.rcmu-proposal dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0 0 6px; }
.rcmu-proposal dt { font-weight: 600; color: #3f3f46; }
.rcmu-proposal dd { margin: 0; overflow-wrap: anywhere; }
.rcmu-proposal p { margin: 0; font-size: 0.9rem; color: #3f3f46; }
.toast-wrap { top: auto !important; bottom: 16px !important; }
@media (max-width: 600px) { .rcmu-card { width: calc(50% - 8px); } .rcmu-proposal img { width: 80px; } }
"""

# `[n]` in an answer lights its box. The chat's `[n]` become focusable spans (re-done as tokens stream in)
# that hover the AnnotatedImage legend entry `[n] …` (which lights its box there); a library answer's `[n]`
# are buttons already and light the `.rcmu-box` of their number in that answer's photos. Hover or focus
# lights, a click, Enter or Space pins until another citation is pinned. Gradio's own markup gets the
# names and roles it lacks (icon buttons, "Empty value" boxes). Inline, so the page needs no CDN.
PAGE_JS = r"""
() => {
  const legend = (n) => [...document.querySelectorAll('#chat-boxes .legend-item')]
    .find((b) => b.textContent.trim().startsWith('[' + n + ']'));
  const wrap = () => {
    const log = document.getElementById('chat-log');
    if (!log) return;
    const walker = document.createTreeWalker(log, NodeFilter.SHOW_TEXT);
    const found = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (/\[\d+\]/.test(node.nodeValue) && !node.parentElement.closest('.rcmu-cite, textarea')) found.push(node);
    }
    for (const node of found) {
      const text = node.nodeValue, parts = document.createDocumentFragment();
      let last = 0;
      for (const m of text.matchAll(/\[(\d+)\]/g)) {
        parts.append(text.slice(last, m.index));
        const cite = document.createElement('span');
        cite.className = 'rcmu-cite';
        cite.dataset.n = m[1];
        cite.tabIndex = 0;
        cite.setAttribute('role', 'button');
        cite.setAttribute('aria-label', 'citation ' + m[1] + ': show its box in the photo');
        cite.textContent = m[0];
        parts.append(cite);
        last = m.index + m[0].length;
      }
      parts.append(text.slice(last));
      node.replaceWith(parts);
    }
  };
  const named = () => {
    for (const el of document.querySelectorAll('.empty[aria-label]:not([role])')) el.setAttribute('role', 'img');
    for (const b of document.querySelectorAll('button:not([aria-label])')) {
      if (b.textContent.trim()) continue;
      const name = b.title || b.dataset.testid || [...b.classList].find((c) => !c.startsWith('svelte-'));
      b.setAttribute('aria-label', (name || 'button').replace(/[-_]/g, ' '));
    }
  };
  const fix = () => { wrap(); named(); };
  new MutationObserver(fix).observe(document.body, {childList: true, subtree: true, characterData: true});
  fix();
  let pinned = null;
  const light = (c, on) => {
    if (!c) return;
    const n = c.dataset.n, answer = c.closest('#library-answer');
    if (answer) {
      answer.querySelectorAll('.rcmu-box[data-n="' + n + '"]').forEach((b) => b.classList.toggle('lit', on));
      return;
    }
    const item = legend(n);
    if (item) item.dispatchEvent(new MouseEvent(on ? 'mouseover' : 'mouseout', {bubbles: true}));
  };
  const cite = (e) => e.target instanceof Element ? e.target.closest('.rcmu-cite') : null;
  const leave = (c) => {
    if (!c || c === pinned) return;
    light(c, false);
    if (pinned && pinned.isConnected) light(pinned, true);
  };
  const pin = (c) => {
    if (pinned && pinned !== c) { const old = pinned; pinned = null; light(old, false); }
    pinned = c;
    light(c, true);
    document.querySelectorAll('.rcmu-cite[aria-pressed]').forEach((o) => o.setAttribute('aria-pressed', 'false'));
    c.setAttribute('aria-pressed', 'true');
  };
  document.addEventListener('mouseover', (e) => light(cite(e), true));
  document.addEventListener('mouseout', (e) => leave(cite(e)));
  document.addEventListener('focusin', (e) => light(cite(e), true));
  document.addEventListener('focusout', (e) => leave(cite(e)));
  document.addEventListener('click', (e) => { const c = cite(e); if (c) pin(c); });
  document.addEventListener('keydown', (e) => {
    const c = cite(e);
    if (c && c.tagName !== 'BUTTON' && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); pin(c); }
  });
}
"""

# The library's fixes name CLI commands; on the page, the same fix is a place to click.
WEB_FIXES = (
    (
        r"see (?:the face ids with )?`rcmu people(?: --json)?`",
        "see the cluster cards (id and faces) in the Library tab",
    ),
    (r"e\.g\. `rcmu merge-clusters 3 7`", "type two or more cluster ids, e.g. 3 7"),
    (r"(?:with|run) `rcmu index(?: DIR)?`(?: again)?", "in the Library tab: type a folder and press Index"),
    (r"teach them with `rcmu remember`", "teach them in the Memory tab"),
    (r"name a face cluster with `rcmu name CLUSTER NAME`", "name a face cluster in the Library tab"),
)


def page_text(exc: RcmuError) -> str:
    """A fixable error as the page says it: `problem — fix` on one line, the fix pointing at the page, no
    server folders."""
    return " ".join(_without_upload_dirs(for_the_page(str(exc))).split())


def for_the_page(text: str) -> str:
    for command, place in WEB_FIXES:
        text = re.sub(command, place, text)
    return text


def _without_upload_dirs(text: str) -> str:
    """Uploaded files are named by the name the user gave them, not by where the server keeps them
    (`web/uploads/<hash>/`): a safety net, as uploads are named so from the start (`WebFiles.take`)."""
    from gradio.utils import get_upload_folder

    return re.sub(re.escape(get_upload_folder().rstrip("/")) + r"/[^/\s]+/", "", text)


def said(exc: BaseException) -> str:
    """Any error as one line for the page: a fixable one as `⚠ problem — fix`, anything else a short
    note (the details go to the server log, never to the page)."""
    if isinstance(exc, RcmuError):
        return f"⚠ {page_text(exc)}"
    log.error("web action failed", exc_info=exc)
    return f"⚠ something went wrong ({type(exc).__name__}) — try again; the server log has the details"


def shown_at(outputs: int, at: int = 0) -> Callable[[F], F]:
    """An action whose errors become the value of its output number `at` (its status line), every other
    output left as it was (a generator's errors likewise, as its last update)."""

    def failed(exc: Exception) -> Any:
        if outputs == 1:
            return said(exc)
        return tuple(said(exc) if i == at else gr.skip() for i in range(outputs))

    def wrap(fn: F) -> F:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def streamed(*args: Any, **kwargs: Any) -> Iterator[Any]:
                try:
                    yield from fn(*args, **kwargs)
                except Exception as exc:
                    yield failed(exc)

            return streamed  # type: ignore[return-value]

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                return failed(exc)

        return plain  # type: ignore[return-value]

    return wrap


def count(n: int, what: str, many: str | None = None) -> str:
    """`1 face`, `2 faces`: a number with its noun in the right form."""
    return f"{n} {what if n == 1 else many or what + 's'}"
