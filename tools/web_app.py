"""`rcmu web`: teach, ask and browse in the browser — a Gradio app over the same `Assistant`.

Three tabs: **Chat** (a photo, questions, the answer streaming in beside the photo with numbered boxes),
**Memory** (teach, check reference photos, edit, forget, memory-only questions) and **Library** (index a
folder, name face clusters, search, ask over the photos). Each login is its own memory user; the page
reads the user from the login, never from a form. Fonts are the system's, so the page needs no CDN.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import RcmuError
from rcmu_agent.tools import _web_handlers as act

__all__ = ["PAGE_CSS", "PAGE_JS", "THEME", "build_app"]

log = logging.getLogger(__name__)
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
PEOPLE_HEADERS = ["name", "category", "info", "photos"]
# Citations in the chat answer light their box: each `[n]` becomes a span (re-done as tokens stream in),
# and hovering or clicking it hovers the AnnotatedImage legend entry `[n] …`, which is what lights a box
# there. Clicking pins the box until another citation is clicked. Inline, so the page needs no CDN.
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
        cite.textContent = m[0];
        parts.append(cite);
        last = m.index + m[0].length;
      }
      parts.append(text.slice(last));
      node.replaceWith(parts);
    }
  };
  new MutationObserver(wrap).observe(document.body, {childList: true, subtree: true, characterData: true});
  let pinned = null;
  const light = (n, on) => {
    const item = legend(n);
    if (item) item.dispatchEvent(new MouseEvent(on ? 'mouseover' : 'mouseout', {bubbles: true}));
  };
  const cite = (e) => e.target instanceof Element ? e.target.closest('.rcmu-cite') : null;
  document.addEventListener('mouseover', (e) => { const c = cite(e); if (c) light(c.dataset.n, true); });
  document.addEventListener('mouseout', (e) => {
    const c = cite(e);
    if (c && c.dataset.n !== pinned) { light(c.dataset.n, false); if (pinned) light(pinned, true); }
  });
  document.addEventListener('click', (e) => {
    const c = cite(e);
    if (c) { pinned = c.dataset.n; light(pinned, true); }
  });
}
"""
PAGE_CSS = ".rcmu-cite { cursor: pointer; text-decoration: underline dotted; font-weight: 600; }"
UserOf = Callable[[gr.Request], str]  # the login's memory user, from the request
Uploaded = Callable[[str, gr.Request], str]  # the login's own copy of an uploaded file


def _readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A fixable error becomes a message in the page; anything else a short note (details in the log)."""

    def shown(exc: Exception) -> gr.Error:
        if isinstance(exc, RcmuError):
            return gr.Error(_without_upload_dirs(_for_the_page(str(exc))), print_exception=False)
        log.exception("web action failed")
        return gr.Error(f"something went wrong ({type(exc).__name__}); the server log has the details")

    if _is_generator(fn):

        @functools.wraps(fn)
        def streamed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise shown(exc) from None

        return streamed

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise shown(exc) from None

    return plain


# The library's fixes name CLI commands; on the page, the same fix is a place to click.
WEB_FIXES = (
    (
        r"see (?:the face ids with )?`rcmu people(?: --json)?`",
        "see the cluster and face ids under each face in the Library tab",
    ),
    (r"e\.g\. `rcmu merge-clusters 3 7`", "type two or more cluster ids, e.g. 3 7"),
    (r"(?:with|run) `rcmu index(?: DIR)?`(?: again)?", "in the Library tab: type a folder and press Index"),
    (r"teach them with `rcmu remember`", "teach them in the Memory tab"),
    (r"name a face cluster with `rcmu name CLUSTER NAME`", "name a face cluster in the Library tab"),
)


def _for_the_page(text: str) -> str:
    for command, place in WEB_FIXES:
        text = re.sub(command, place, text)
    return text


def _without_upload_dirs(text: str) -> str:
    """Uploaded files are named by the name the user gave them, not by where the server keeps them
    (the shared `web/uploads/<hash>/` or a login's `web/users/<login>/<hash>/`)."""
    uploads = os.environ.get("GRADIO_TEMP_DIR")
    if not uploads:
        return text
    web = re.escape(os.path.dirname(uploads.rstrip("/")))
    return re.sub(web + r"/(?:uploads|users/[^/\s]+)/[^/\s]+/", "", text)


def _is_generator(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def build_app(assistant: Assistant, *, context_only: bool = False, logins: bool = False) -> gr.Blocks:
    """The page. With `logins`, each Gradio login is a memory user; without, the settings' user."""

    def user_of(request: gr.Request) -> str:
        from rcmu_agent.users import check_user

        return check_user(request.username if logins and request.username else assistant.settings.user)

    uploads = act.Uploads(assistant.settings.home / "web")

    def uploaded(path: str, request: gr.Request) -> str:
        return uploads.own(path, user_of(request))

    with gr.Blocks(title="rcmu — photo memory") as app:
        gr.Markdown("## rcmu — ask about your photos, with what you taught it")
        with gr.Tab("Chat"):
            _chat_tab(assistant, user_of, uploaded, context_only)
        with gr.Tab("Memory"):
            _memory_tab(assistant, user_of, uploaded)
        with gr.Tab("Library"):
            _library_tab(assistant, user_of)
    return app


def _chat_tab(assistant: Assistant, user_of: UserOf, uploaded: Uploaded, context_only: bool) -> None:
    session = gr.State(act.ChatSession())
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"], elem_id="chat-photo")
            boxes = gr.AnnotatedImage(label="Who is where (hover a label)", elem_id="chat-boxes")
        with gr.Column(scale=1):
            chat = gr.Chatbot(label="Conversation", elem_id="chat-log", height=420)
            question = gr.Textbox(label="Question", placeholder="Who is on the left?", elem_id="chat-question")
            regions = gr.Textbox(
                label="Your boxes (optional): one per line, x1,y1,x2,y2[:category[:info]] — the first is <region1>",
                lines=2,
                elem_id="chat-regions",
            )
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="chat-ask")
                show = gr.Checkbox(label="Show the context the model received", value=False)
            context = gr.Code(label="Context", visible=False, language=None, elem_id="chat-context")

    @_readable
    def new_photo(path: str | None, request: gr.Request) -> tuple[act.ChatSession, list[Any], Any]:
        return act.ChatSession(photo=uploaded(path, request) if path else None), [], None

    @_readable
    def turn(
        text: str, history: list[Any], state: act.ChatSession, spec: str, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        history = [*history, {"role": "user", "content": text}]
        reply = {"role": "assistant", "content": "…"}
        for partial, answer in act.stream_answer(assistant, user_of(request), state, text, spec, context_only):
            reply = {"role": "assistant", "content": partial}
            if answer is None:
                yield [*history, reply], state, gr.skip(), gr.skip(), ""
                continue
            user = user_of(request)
            drawn = act.labelled(assistant.photo(answer.photo, user=user), answer.regions) if answer.photo else None
            yield [*history, reply], state, drawn, answer.prompt, ""

    photo.change(new_photo, photo, [session, chat, boxes])
    inputs = [question, chat, session, regions]
    outputs = [chat, session, boxes, context, question]
    ask.click(turn, inputs, outputs)
    question.submit(turn, inputs, outputs)
    show.change(lambda on: gr.update(visible=on), show, context)


def _memory_tab(assistant: Assistant, user_of: UserOf, uploaded: Uploaded) -> None:
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Teach someone or something")
            name = gr.Textbox(label="Name", elem_id="teach-name")
            category = gr.Textbox(label="Category", value="person", elem_id="teach-category")
            info = gr.Textbox(label="What to know about them", lines=2, elem_id="teach-info")
            photos = gr.File(label="Reference photos", file_count="multiple", type="filepath", elem_id="teach-photos")
            with gr.Row():
                check = gr.Button("Check photos", elem_id="teach-check")
                teach = gr.Button("Remember", variant="primary", elem_id="teach-save")
            preview = gr.Gallery(label="Faces that will be remembered", height=200, elem_id="teach-preview")
            status = gr.Markdown(elem_id="teach-status")
        with gr.Column():
            gr.Markdown("### Who is in memory")
            table = gr.Dataframe(headers=PEOPLE_HEADERS, interactive=False, elem_id="people-table")
            refresh = gr.Button("Refresh", elem_id="people-refresh")
            who = gr.Textbox(label="Name to edit or forget", elem_id="edit-name")
            new_info = gr.Textbox(label="New info (leave empty to keep)", elem_id="edit-info")
            more = gr.File(label="Photos to add", file_count="multiple", type="filepath", elem_id="edit-photos")
            with gr.Row():
                edit = gr.Button("Update", elem_id="edit-save")
                forget = gr.Button("Forget", variant="stop", elem_id="edit-forget")
            gr.Markdown("### Ask your memory (no photo)")
            recall_q = gr.Textbox(label="Question", placeholder="When did we adopt Bella?", elem_id="recall-question")
            recall_a = gr.Markdown(elem_id="recall-answer")

    @_readable
    def rows(request: gr.Request) -> list[list[Any]]:
        return act.people_rows(assistant.entities(user=user_of(request)))

    def own(files: list[str] | None, request: gr.Request) -> list[str]:
        return [uploaded(path, request) for path in files or []]

    @_readable
    def checked(files: list[str] | None, kind: str, request: gr.Request) -> tuple[list[Any], str]:
        shown, warnings = act.check_reference(assistant, own(files, request), kind)
        gallery = [(act_draw(image, boxes), f"photo {i}") for i, (image, boxes) in enumerate(shown, start=1)]
        return gallery, "\n".join(f"⚠ {w}" for w in warnings) or "photos look fine"

    @_readable
    def remembered(who_: str, kind: str, text: str, files: list[str] | None, request: gr.Request) -> tuple[Any, ...]:
        photos = own(files, request)
        entity = assistant.remember(who_, info=text, photos=photos, category=kind, user=user_of(request))
        done = f"remembered **{entity.name}** ({entity.category}) with {len(entity.photos)} photo(s)"
        return done, rows(request), "", "", None, []  # a clean form for the next one

    @_readable
    def updated(who_: str, text: str, files: list[str] | None, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        old = assistant.parts.memory.get(user, who_)
        entity = assistant.remember(
            old.name, info=text.strip() or old.info, photos=own(files, request), category=old.category, user=user
        )
        return f"updated **{entity.name}**: {len(entity.photos)} photo(s)", rows(request), None

    @_readable
    def forgotten(who_: str, request: gr.Request) -> tuple[str, Any]:
        entity = assistant.forget(who_, user=user_of(request))
        return f"forgot **{entity.name}**", rows(request)

    @_readable
    def recalled(q: str, request: gr.Request) -> str:
        from rcmu_agent.tools._common import answer_text

        return answer_text(assistant.ask(q, user=user_of(request)))

    check.click(checked, [photos, category], [preview, status])
    teach.click(remembered, [name, category, info, photos], [status, table, name, info, photos, preview])
    edit.click(updated, [who, new_info, more], [status, table, more])
    forget.click(forgotten, [who], [status, table])
    refresh.click(rows, None, table)
    recall_q.submit(recalled, recall_q, recall_a)


def act_draw(image: Any, boxes: list[tuple[tuple[int, int, int, int], str]]) -> Any:
    """A preview with boxes drawn (the gallery shows plain images), on a copy of the photo as the boxes
    were found on it: decoded by the project's loader, so upright whatever its EXIF orientation."""
    from PIL import ImageDraw

    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(out)
    for (x1, y1, x2, y2), label in boxes:
        draw.rectangle((x1, y1, x2, y2), outline=(0, 160, 0) if label != "ignored" else (200, 0, 0), width=4)
    out.thumbnail((640, 640))
    return out


def _library_tab(assistant: Assistant, user_of: UserOf) -> None:
    from rcmu_agent.tools._web_library import library_tab

    library_tab(assistant, user_of, _readable)
