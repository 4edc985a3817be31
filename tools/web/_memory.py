"""The web app's Memory tab: teach, check reference photos, edit, forget (after a confirmation), and ask
memory a question with no photo.

Each form has its status line under its buttons; Remember leaves a clean form (the next person taught is
not a "cat" with the last one's info), and says when what was taught can never be recognised in a photo
(no photo, or something other than a person while no image model is configured).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import RcmuError
from rcmu_agent.schema import Entity
from rcmu_agent.tools.web import _handlers as act
from rcmu_agent.tools.web._files import WebFiles
from rcmu_agent.tools.web._page import count, page_text, shown_at

__all__ = ["PEOPLE_HEADERS", "PHOTO_QUEUE", "act_draw", "memory_tab", "unrecognisable"]

PEOPLE_HEADERS = ["name", "category", "info", "photos"]
PHOTO_QUEUE = "memory-photos"  # the Memory tab's uploads and the buttons that use them, in order
UserOf = Callable[[gr.Request], str]
Uploads = list[dict[str, Any]] | None  # a gr.File's value as Gradio sends it (FileData dicts), unprocessed


def unrecognisable(assistant: Assistant, entity: Entity) -> str:
    """Why `entity` will never be recognised in a photo, as a warning line; "" when it can be."""
    if not entity.photos:
        return (
            f"⚠ {entity.name} has no photo, so will not be recognised in photos — add one under Photos to add "
            "(questions to Ask your memory still use what you taught)"
        )
    settings = assistant.settings
    if entity.category != "person" and not (settings.image_embedding_model and settings.object_detector):
        return (
            f"⚠ {entity.name} ({entity.category}) will not be recognised in photos: no image model is configured "
            "— start rcmu web with RCMU_OBJECT_DETECTOR and RCMU_IMAGE_EMBEDDING_MODEL set "
            "(questions to Ask your memory still use what you taught)"
        )
    return ""


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


def _status(elem_id: str) -> gr.Markdown:
    return gr.Markdown(elem_id=elem_id, elem_classes=["rcmu-status"])


def memory_tab(assistant: Assistant, user_of: UserOf, files: WebFiles, page: gr.Blocks) -> None:
    """The tab, wired; `page` is the app, whose load fills the people table on every visit."""
    with gr.Row():
        with gr.Column(min_width=300):
            gr.Markdown("### Teach someone or something")
            name = gr.Textbox(label="Name", elem_id="teach-name")
            category = gr.Textbox(label="Category", value="person", elem_id="teach-category")
            info = gr.Textbox(label="What to know about them", lines=2, elem_id="teach-info")
            photos = gr.File(label="Reference photos", file_count="multiple", type="filepath", elem_id="teach-photos")
            with gr.Row():
                check = gr.Button("Check photos", elem_id="teach-check")
                teach = gr.Button("Remember", variant="primary", elem_id="teach-save")
            status = _status("teach-status")
            preview = gr.Gallery(label="Faces that will be remembered", height=200, elem_id="teach-preview", buttons=[])
        with gr.Column(min_width=300):
            gr.Markdown("### Who is in memory")
            table = gr.Dataframe(
                headers=PEOPLE_HEADERS,
                interactive=False,
                wrap=True,
                buttons=[],
                column_widths=["25%", "22%", "35%", "18%"],
                elem_id="people-table",
            )
            refresh = gr.Button("Refresh", elem_id="people-refresh")
            who = gr.Textbox(label="Name to edit or forget", elem_id="edit-name")
            new_info = gr.Textbox(label="New info (leave empty to keep)", elem_id="edit-info")
            more = gr.File(label="Photos to add", file_count="multiple", type="filepath", elem_id="edit-photos")
            with gr.Row():
                edit = gr.Button("Update", elem_id="edit-save")
                forget = gr.Button("Forget…", variant="stop", elem_id="edit-forget")
            with gr.Group(visible=False, elem_id="forget-confirm") as confirm:
                asking = gr.Markdown(elem_id="forget-question")
                with gr.Row():
                    yes = gr.Button("Yes, forget", variant="stop", elem_id="forget-yes")
                    no = gr.Button("Cancel", elem_id="forget-no")
            edited = _status("edit-status")
            gr.Markdown("### Ask your memory (no photo)")
            recall_q = gr.Textbox(label="Question", placeholder="When did we adopt Bella?", elem_id="recall-question")
            recall_a = gr.Markdown(elem_id="recall-answer")
    picked, adding = gr.State(act.Picked()), gr.State(act.Picked())  # the two forms' photos, as vault ids

    def rows(request: gr.Request) -> list[list[Any]]:
        return act.people_rows(assistant.entities(user=user_of(request)))

    @shown_at(2, at=1)
    def listed(request: gr.Request) -> tuple[list[list[Any]], str]:
        return rows(request), ""

    @shown_at(2, at=1)
    def took(uploads: Uploads, said: str, request: gr.Request) -> tuple[act.Picked, Any]:
        """The photos into the login's vault as they arrive, a refusal said at once (and again on use).
        Otherwise the status is left alone but for clearing an old refusal: a click can overtake this
        event (the page sends it as soon as the upload lands), and its status is the one to keep."""
        picked = act.pick(files, user_of(request), uploads)
        if picked.refused is not None:
            return picked, f"⚠ {page_text(RcmuError(*picked.refused))}"
        return picked, "" if uploads and (said or "").startswith("⚠") else gr.skip()

    @shown_at(2, at=1)
    def checked(uploads: Uploads, chosen: act.Picked, kind: str, request: gr.Request) -> tuple[list[Any], str]:
        user = user_of(request)
        photos = act.current(files, user, uploads, chosen).taken()
        shown, warnings = act.check_reference(assistant, user, photos, kind)
        gallery = [(act_draw(image, boxes), f"photo {i}") for i, (image, boxes) in enumerate(shown, start=1)]
        return gallery, "\n\n".join(f"⚠ {w}" for w in warnings) or "photos look fine"

    @shown_at(8)
    def remembered(
        who_: str, kind: str, text: str, uploads: Uploads, chosen: act.Picked, request: gr.Request
    ) -> tuple[Any, ...]:
        user = user_of(request)
        photos = act.current(files, user, uploads, chosen).ids()
        entity = assistant.remember(who_, info=text, photos=photos, category=kind, user=user)
        done = f"remembered **{entity.name}** ({entity.category}) with {count(len(entity.photos), 'photo')}"
        warning = unrecognisable(assistant, entity)
        # a clean form for the next one: name, category, info, photos, preview and the kept uploads
        return "\n\n".join(filter(None, [done, warning])), rows(request), "", "person", "", None, [], act.Picked()

    @shown_at(4)
    def updated(who_: str, text: str, uploads: Uploads, chosen: act.Picked, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        photos = act.current(files, user, uploads, chosen).ids()
        old = assistant.parts.memory.get(user, who_)
        entity = assistant.remember(
            old.name, info=text.strip() or old.info, photos=photos, category=old.category, user=user
        )
        done = f"updated **{entity.name}**: {count(len(entity.photos), 'photo')}"
        return done, rows(request), None, act.Picked()

    @shown_at(3, at=2)
    def confirming(who_: str, request: gr.Request) -> tuple[Any, ...]:
        entity = assistant.parts.memory.get(user_of(request), who_)
        question = f"Forget **{entity.name}** ({entity.category}) and {count(len(entity.photos), 'photo')}?"
        return gr.update(visible=True), question + " This cannot be undone.", ""

    @shown_at(4)
    def forgotten(who_: str, request: gr.Request) -> tuple[Any, ...]:
        entity = assistant.forget(who_, user=user_of(request))
        return f"forgot **{entity.name}**", rows(request), gr.update(visible=False), ""

    @shown_at(1)
    def recalled(q: str, request: gr.Request) -> str:
        from rcmu_agent.tools._common import answer_text

        return answer_text(assistant.ask(q, user=user_of(request)))

    # A form's uploads and the buttons that use them share one queue, in order, and the buttons take the
    # uploads too (unprocessed: Gradio never decodes them), so a click never acts on a half-landed choice.
    queued: dict[str, Any] = {"preprocess": False, "concurrency_id": PHOTO_QUEUE}
    photos.change(took, [photos, status], [picked, status], api_name="teach_photos", **queued)
    more.change(took, [more, edited], [adding, edited], api_name="edit_photos", **queued)
    check.click(checked, [photos, picked, category], [preview, status], **queued)
    teach.click(
        remembered,
        [name, category, info, photos, picked],
        [status, table, name, category, info, photos, preview, picked],
        **queued,
    )
    edit.click(updated, [who, new_info, more, adding], [edited, table, more, adding], **queued)
    forget.click(confirming, [who], [confirm, asking, edited])
    yes.click(forgotten, [who], [edited, table, confirm, who])
    no.click(lambda: (gr.update(visible=False), "nothing was forgotten"), None, [confirm, edited])
    refresh.click(listed, None, [table, edited])
    page.load(listed, None, [table, edited])
    recall_q.submit(recalled, recall_q, recall_a)
