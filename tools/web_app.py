"""`rcmu web`: teach, ask and browse in the browser — a Gradio app over the same `Assistant`.

Three tabs: **Chat** (a photo, questions, the answer streaming in beside the photo with numbered boxes),
**Memory** (teach, check reference photos, edit, forget, memory-only questions) and **Library** (index a
folder, name face clusters, search, ask over the photos). Each login is its own memory user; the page
reads the user from the login, never from a form. Fonts are the system's, so the page needs no CDN.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import RcmuError
from rcmu_agent.timings import describe
from rcmu_agent.tools import _web_handlers as act
from rcmu_agent.tools._web_files import PrivateBlocks, WebFiles

__all__ = ["PAGE_CSS", "PAGE_JS", "THEME", "build_app"]

log = logging.getLogger(__name__)
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
PEOPLE_HEADERS = ["name", "category", "info", "photos"]
PHOTO_QUEUE = "memory-photos"  # the Memory tab's uploads and the buttons that use them, in order
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
Uploads = list[dict[str, Any]] | None  # a gr.File's value as Gradio sends it (FileData dicts), unprocessed


def _readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A fixable error becomes a message in the page; anything else a short note (details in the log)."""

    def shown(exc: Exception) -> gr.Error:
        if isinstance(exc, RcmuError):
            return gr.Error(page_text(exc), print_exception=False)
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


def page_text(exc: RcmuError) -> str:
    """A fixable error as the page says it: `problem — fix`, the fix pointing at the page, no server folders."""
    return _without_upload_dirs(_for_the_page(str(exc)))


def _for_the_page(text: str) -> str:
    for command, place in WEB_FIXES:
        text = re.sub(command, place, text)
    return text


def _without_upload_dirs(text: str) -> str:
    """Uploaded files are named by the name the user gave them, not by where the server keeps them
    (`web/uploads/<hash>/`): a safety net, as uploads are named so from the start (`WebFiles.take`)."""
    from gradio.utils import get_upload_folder

    return re.sub(re.escape(get_upload_folder().rstrip("/")) + r"/[^/\s]+/", "", text)


def _is_generator(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def build_app(assistant: Assistant, *, context_only: bool = False, logins: bool = False) -> PrivateBlocks:
    """The page. With `logins`, each Gradio login is a memory user; without, the settings' user.

    Uploads go into the login's vault as they arrive (`WebFiles.take`) and the page keeps their ids;
    files Gradio serves go only to their login (`PrivateBlocks`: launch it as usual)."""
    from gradio.utils import get_upload_folder

    from rcmu_agent.users import check_user

    def user_for(login: str | None) -> str:
        return check_user(login if logins and login else assistant.settings.user)

    def user_of(request: gr.Request) -> str:
        return user_for(request.username)

    parts = assistant.parts
    files = WebFiles(Path(get_upload_folder()), parts.photos, parts.vault, max_bytes=assistant.settings.max_image_bytes)
    with PrivateBlocks(files, user_for, title="rcmu — photo memory") as app:
        gr.Markdown("## rcmu — ask about your photos, with what you taught it")
        with gr.Tab("Chat"):
            _chat_tab(assistant, user_of, files, context_only)
        with gr.Tab("Memory"):
            _memory_tab(assistant, user_of, files)
        with gr.Tab("Library"):
            _library_tab(assistant, user_of)
    return app


def _chat_tab(assistant: Assistant, user_of: UserOf, files: WebFiles, context_only: bool) -> None:
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
    def new_photo(upload: dict[str, Any] | None, request: gr.Request) -> tuple[act.ChatSession, list[Any], Any]:
        """A new photo, a new conversation. A refused photo is said in the conversation at once, and
        again on asking (the photo never reaches Gradio's own image decoding: `preprocess=False`)."""
        if not upload:
            return act.ChatSession(), [], None
        try:
            taken = files.take(user_of(request), upload)
        except RcmuError as exc:
            return act.ChatSession.refusing(exc), [{"role": "assistant", "content": f"⚠ {page_text(exc)}"}], None
        return act.ChatSession(photo=taken.id), [], None

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
            shown = answer.prompt + ("\n\n" + describe(answer.timings) if answer.timings else "")  # where time went
            yield [*history, reply], state, drawn, shown, ""

    photo.change(new_photo, photo, [session, chat, boxes], preprocess=False)
    inputs = [question, chat, session, regions]
    outputs = [chat, session, boxes, context, question]
    ask.click(turn, inputs, outputs)
    question.submit(turn, inputs, outputs)
    show.change(lambda on: gr.update(visible=on), show, context)


def _memory_tab(assistant: Assistant, user_of: UserOf, files: WebFiles) -> None:
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
    picked, adding = gr.State(act.Picked()), gr.State(act.Picked())  # the two forms' photos, as vault ids

    @_readable
    def rows(request: gr.Request) -> list[list[Any]]:
        return act.people_rows(assistant.entities(user=user_of(request)))

    @_readable
    def took(uploads: Uploads, said: str, request: gr.Request) -> tuple[act.Picked, Any]:
        """The photos into the login's vault as they arrive, a refusal said at once (and again on use).
        Otherwise the status is left alone but for clearing an old refusal: a click can overtake this
        event (the page sends it as soon as the upload lands), and its status is the one to keep."""
        picked = act.pick(files, user_of(request), uploads)
        if picked.refused is not None:
            return picked, f"⚠ {page_text(RcmuError(*picked.refused))}"
        return picked, "" if uploads and (said or "").startswith("⚠") else gr.skip()

    @_readable
    def checked(uploads: Uploads, chosen: act.Picked, kind: str, request: gr.Request) -> tuple[list[Any], str]:
        user = user_of(request)
        photos = act.current(files, user, uploads, chosen).taken()
        shown, warnings = act.check_reference(assistant, user, photos, kind)
        gallery = [(act_draw(image, boxes), f"photo {i}") for i, (image, boxes) in enumerate(shown, start=1)]
        return gallery, "\n".join(f"⚠ {w}" for w in warnings) or "photos look fine"

    @_readable
    def remembered(
        who_: str, kind: str, text: str, uploads: Uploads, chosen: act.Picked, request: gr.Request
    ) -> tuple[Any, ...]:
        user = user_of(request)
        photos = act.current(files, user, uploads, chosen).ids()
        entity = assistant.remember(who_, info=text, photos=photos, category=kind, user=user)
        done = f"remembered **{entity.name}** ({entity.category}) with {len(entity.photos)} photo(s)"
        return done, rows(request), "", "", None, [], act.Picked()  # a clean form for the next one

    @_readable
    def updated(who_: str, text: str, uploads: Uploads, chosen: act.Picked, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        photos = act.current(files, user, uploads, chosen).ids()
        old = assistant.parts.memory.get(user, who_)
        entity = assistant.remember(
            old.name, info=text.strip() or old.info, photos=photos, category=old.category, user=user
        )
        return f"updated **{entity.name}**: {len(entity.photos)} photo(s)", rows(request), None, act.Picked()

    @_readable
    def forgotten(who_: str, request: gr.Request) -> tuple[str, Any]:
        entity = assistant.forget(who_, user=user_of(request))
        return f"forgot **{entity.name}**", rows(request)

    @_readable
    def recalled(q: str, request: gr.Request) -> str:
        from rcmu_agent.tools._common import answer_text

        return answer_text(assistant.ask(q, user=user_of(request)))

    # A form's uploads and the buttons that use them share one queue, in order, and the buttons take the
    # uploads too (unprocessed: Gradio never decodes them), so a click never acts on a half-landed choice.
    queued: dict[str, Any] = {"preprocess": False, "concurrency_id": PHOTO_QUEUE}
    photos.change(took, [photos, status], [picked, status], api_name="teach_photos", **queued)
    more.change(took, [more, status], [adding, status], api_name="edit_photos", **queued)
    check.click(checked, [photos, picked, category], [preview, status], **queued)
    teach.click(
        remembered,
        [name, category, info, photos, picked],
        [status, table, name, info, photos, preview, picked],
        **queued,
    )
    edit.click(updated, [who, new_info, more, adding], [status, table, more, adding], **queued)
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
