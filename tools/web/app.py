"""`rcmu web`: teach, ask and browse in the browser — a Gradio app over the same `Assistant`.

Three tabs: **Chat** (a photo, questions, the answer streaming in beside the photo with numbered boxes, and
its unknown faces to name with a confirm step, `_teach`),
**Memory** (teach, check reference photos, edit, forget, memory-only questions; `_memory`) and
**Library** (index a folder, name face clusters, search, ask over the photos; `_library`). Each login
is its own memory user; the page reads the user from the login, never from a form. Fonts are the
system's, so the page needs no CDN. Every error is one line in the page, next to what caused it
(`_page.shown_at`); the chat says its own in the conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import InvalidInputError, RcmuError
from rcmu_agent.timings import describe
from rcmu_agent.tools.web import _handlers as act
from rcmu_agent.tools.web._files import PrivateBlocks, WebFiles
from rcmu_agent.tools.web._library import library_tab
from rcmu_agent.tools.web._memory import memory_tab
from rcmu_agent.tools.web._page import PAGE_CSS, PAGE_JS, THEME, page_text, said
from rcmu_agent.tools.web._teach import TeachPanel, decide, teach_panel, typed_decision

__all__ = ["ASK_WAITING", "LOOKING", "PAGE_CSS", "PAGE_JS", "THEME", "build_app", "page_text"]

UserOf = Callable[[gr.Request], str]  # the login's memory user, from the request
LOOKING = "looking at the photo…"  # the reply until its first token arrives
ASK_WAITING = "Ask (upload a photo first)"
NO_PHOTO = (
    "⚠ no photo yet — upload one above to ask about it (questions without a photo go to Ask your memory, "
    "in the Memory tab)"
)


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
            memory_tab(assistant, user_of, files, app)
        with gr.Tab("Library"):
            library_tab(assistant, user_of, app)
    return app


def _chat_tab(assistant: Assistant, user_of: UserOf, files: WebFiles, context_only: bool) -> None:
    session = gr.State(act.ChatSession())
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            photo = gr.Image(
                type="filepath", label="Photo", sources=["upload", "clipboard"], elem_id="chat-photo", buttons=[]
            )
            boxes = gr.AnnotatedImage(label="Who is where (hover a label or a [n])", elem_id="chat-boxes", buttons=[])
        with gr.Column(scale=1, min_width=300):
            chat = gr.Chatbot(label="Conversation", elem_id="chat-log", height=420, buttons=["copy"])
            question = gr.Textbox(label="Question", placeholder="Who is on the left?", elem_id="chat-question")
            regions = gr.Textbox(
                label="Your boxes (optional): one per line, x1,y1,x2,y2[:category[:info]] — the first is <region1>",
                lines=2,
                elem_id="chat-regions",
            )
            with gr.Row():
                ask = gr.Button(ASK_WAITING, variant="primary", elem_id="chat-ask", interactive=False, min_width=160)
                show = gr.Checkbox(label="Show the context the model received", value=False)
            context = gr.Code(label="Context", visible=False, language=None, elem_id="chat-context")
            naming = teach_panel(assistant, user_of, session, chat, boxes)

    def new_photo(upload: dict[str, Any] | None, state: act.ChatSession, request: gr.Request) -> tuple[Any, ...]:
        """A new photo, a new conversation, and Ask enabled only for a photo that was taken. A refused
        photo is said in the conversation at once, in one line, and taken off the page (no broken image
        is left); it never reaches Gradio's own image decoding (`preprocess=False`)."""
        if not upload:
            if state is not None and state.refused is not None and state.photo is None:
                # the refused photo, taken off: its message and Ask's note stay
                return (gr.skip(),) * (5 + len(naming.outputs))
            waiting = gr.update(value=ASK_WAITING, interactive=False)
            return act.ChatSession(), [], None, waiting, gr.skip(), *TeachPanel.shown(None)
        try:
            taken = files.take(user_of(request), upload)
        except Exception as exc:
            why = exc if isinstance(exc, RcmuError) else InvalidInputError("the photo could not be taken", "try again")
            refused = act.ChatSession.refusing(why)
            blocked = gr.update(value="Ask (this photo was refused)", interactive=False)
            return refused, [{"role": "assistant", "content": said(exc)}], None, blocked, None, *TeachPanel.shown(None)
        asking = gr.update(value="Ask", interactive=True)
        return act.ChatSession(photo=taken.id), [], None, asking, gr.skip(), *TeachPanel.shown(None)

    def turn(
        text: str, history: list[Any], state: act.ChatSession, spec: str, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        """The question at once with a "looking" reply, then the answer as it streams; an error replaces
        the reply with its one line. A turn that proposes a memory change ("[2] is Rose") shows its card
        in the naming panel, the photo's boxes left as they were."""
        history = [*history, {"role": "user", "content": text}]
        unchanged = (gr.skip(),) * len(naming.outputs)
        if state.photo is None and state.refused is None:
            yield [*history, {"role": "assistant", "content": NO_PHOTO}], state, gr.skip(), gr.skip(), "", *unchanged
            return
        decision = typed_decision(state, text)
        if decision is not None:  # "yes" or "no" to the card on the page
            try:
                decided, drawn = decide(assistant, user_of(request), state, decision)
            except Exception as exc:
                refused = {"role": "assistant", "content": said(exc)}
                yield [*history, refused], state, gr.skip(), gr.skip(), "", *unchanged
                return
            done = {"role": "assistant", "content": decided.text}
            yield [*history, done], state, drawn, gr.skip(), "", *TeachPanel.shown(decided)
            return
        looking = {"role": "assistant", "content": LOOKING}
        yield [*history, looking], state, gr.skip(), gr.skip(), "", *TeachPanel.quiet()
        try:
            for partial, answer in act.stream_answer(assistant, user_of(request), state, text, spec, context_only):
                reply = {"role": "assistant", "content": partial}
                if answer is None:
                    yield [*history, reply], state, gr.skip(), gr.skip(), gr.skip(), *unchanged
                    continue
                state.proposing = answer.change is not None and answer.change.status == "proposed"
                if state.proposing:
                    reply["content"] = answer.text
                    yield [*history, reply], state, gr.skip(), gr.skip(), gr.skip(), *TeachPanel.shown(answer)
                    continue
                user = user_of(request)
                drawn = act.labelled(assistant.photo(answer.photo, user=user), answer.regions) if answer.photo else None
                shown = answer.prompt + ("\n\n" + describe(answer.timings) if answer.timings else "")  # where time went
                yield [*history, reply], state, drawn, shown, gr.skip(), *TeachPanel.shown(answer)
        except Exception as exc:
            failed = {"role": "assistant", "content": said(exc)}
            yield [*history, failed], state, gr.skip(), gr.skip(), gr.skip(), *unchanged

    photo.change(new_photo, [photo, session], [session, chat, boxes, ask, photo, *naming.outputs], preprocess=False)
    inputs = [question, chat, session, regions]
    outputs = [chat, session, boxes, context, question, *naming.outputs]
    # a question sent while an answer streams waits its turn (Gradio's default drops it without a word)
    ask.click(turn, inputs, outputs, trigger_mode="always_last")
    question.submit(turn, inputs, outputs, trigger_mode="always_last")
    show.change(lambda on: gr.update(visible=on), show, context)
