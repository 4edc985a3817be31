"""The web app's Library tab: index a folder, name the faces nobody has named, search, ask over photos.

Folders are indexed only inside the allowed folders (`RCMU_ALLOWED_ROOTS`, `{user}` expanded per login).
Each row of controls has its own status line just under it, where its errors are said (`shown_at`).
The clusters are cards with their id and face count (`_show`), drawn again whenever the page loads,
and the cluster pickers list exactly the clusters shown, so no action starts from a cluster that is not there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rcmu_agent.annotate import shrink
from rcmu_agent.assistant import Assistant
from rcmu_agent.photos import PhotoAccess
from rcmu_agent.tools.web import _handlers as act
from rcmu_agent.tools.web._page import count, shown_at
from rcmu_agent.tools.web._show import cluster_cards, index_summary, library_answer

__all__ = ["library_tab"]


def _drawn(photo: Any, regions: list[Any], matched: list[int]) -> Any:
    """A search hit with the matched people outlined (others thinner), shrunk for the gallery first:
    drawing on the 12 MP original would cost more than the search."""
    from PIL import ImageDraw

    out, scale = shrink(photo, 640)
    out = out.convert("RGB")  # a copy: the cached photo is never drawn on
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 250))
    for i, region in enumerate(regions):
        color = (0, 160, 0) if i in matched else (120, 120, 120)
        box = tuple(v * scale for v in region.box)
        draw.rectangle(box, outline=color, width=width if i in matched else max(1, width // 2))
    return out


def _image(path: str) -> Any:
    """Pixels, not a path: the page never gets a URL into the home, where other users' files live.
    Opened with the photo decoders only, as every photo is."""
    from rcmu_agent.images import open_image

    with open_image(path) as img:
        return img.convert("RGB")


@dataclass
class _Controls:
    """The tab's components: laid out by `_layout`, wired to the assistant by `library_tab`."""

    folder: gr.Textbox
    index: gr.Button
    report: gr.Markdown
    clusters: gr.HTML
    cluster_id: gr.Dropdown
    cluster_name: gr.Textbox
    cluster_info: gr.Textbox
    name_it: gr.Button
    merge_ids: gr.Textbox
    merge: gr.Button
    split_id: gr.Dropdown
    split_faces: gr.Textbox
    split: gr.Button
    edited: gr.Markdown
    people: gr.Textbox
    text: gr.Textbox
    since: gr.Textbox
    until: gr.Textbox
    search: gr.Button
    found: gr.Markdown
    hits: gr.Gallery
    question: gr.Textbox
    ask: gr.Button
    answer: gr.HTML


def _status(elem_id: str) -> gr.Markdown:
    return gr.Markdown(elem_id=elem_id, elem_classes=["rcmu-status"])


def _layout() -> _Controls:
    """Folder indexing, then naming, merging and splitting face clusters, then search and questions."""
    with gr.Row(equal_height=True):
        folder = gr.Textbox(label="Folder of photos (inside the allowed folders)", elem_id="library-folder", scale=4)
        index = gr.Button("Index", variant="primary", elem_id="library-index", scale=1, min_width=120)
    report = _status("library-report")
    gr.Markdown("### Faces nobody has named yet")
    clusters = gr.HTML(elem_id="library-clusters")
    with gr.Row(equal_height=True):
        cluster_id = gr.Dropdown(label="Cluster", choices=[], value=None, elem_id="library-name-id", min_width=160)
        cluster_name = gr.Textbox(label="Name them", elem_id="library-name", min_width=160)
        cluster_info = gr.Textbox(label="Info (optional)", elem_id="library-name-info", min_width=160)
        name_it = gr.Button("Name", elem_id="library-name-go", min_width=100)
    with gr.Row(equal_height=True):
        merge_ids = gr.Textbox(label="Merge clusters (ids, e.g. 3 7)", elem_id="library-merge", min_width=160)
        merge = gr.Button("Merge", elem_id="library-merge-go", min_width=100)
        split_id = gr.Dropdown(label="Split cluster", choices=[], value=None, elem_id="library-split-id", min_width=160)
        split_faces = gr.Textbox(label="Face ids to move out", elem_id="library-split-faces", min_width=160)
        split = gr.Button("Split", elem_id="library-split-go", min_width=100)
    edited = _status("library-edited")
    gr.Markdown("### Search and ask")
    with gr.Row(equal_height=True):
        people = gr.Textbox(label="People (comma separated, all together)", elem_id="search-people", min_width=160)
        text = gr.Textbox(label="Text", elem_id="search-text", min_width=160)
        since = gr.Textbox(label="Since (YYYY-MM-DD)", elem_id="search-since", min_width=140)
        until = gr.Textbox(label="Until (YYYY-MM-DD)", elem_id="search-until", min_width=140)
        search = gr.Button("Search", elem_id="search-go", min_width=100)
    found = _status("search-status")
    hits = gr.Gallery(label="Photos", columns=4, height=320, elem_id="search-hits", buttons=[])
    with gr.Row(equal_height=True):
        question = gr.Textbox(
            label="Ask about your photos",
            placeholder="When was I last with Rose and Kit?",
            elem_id="library-question",
            scale=4,
        )
        ask = gr.Button("Ask", variant="primary", elem_id="library-ask", scale=1, min_width=100)
    answer = gr.HTML(elem_id="library-answer")
    return _Controls(
        folder=folder, index=index, report=report, clusters=clusters, cluster_id=cluster_id,
        cluster_name=cluster_name, cluster_info=cluster_info, name_it=name_it, merge_ids=merge_ids, merge=merge,
        split_id=split_id, split_faces=split_faces, split=split, edited=edited, people=people, text=text,
        since=since, until=until, search=search, found=found, hits=hits, question=question, ask=ask, answer=answer,
    )  # fmt: skip


def library_tab(assistant: Assistant, user_of: Callable[[gr.Request], str], page: gr.Blocks) -> None:
    """The tab, wired; `page` is the app, whose load draws the clusters again on every visit."""
    ui = _layout()

    def shown_clusters(request: gr.Request) -> tuple[str, Any, Any]:
        """The cards, and both cluster pickers listing the same clusters, nothing picked."""
        found = assistant.people(user=user_of(request))
        choices = [(f"cluster {c.id} ({count(c.size, 'face')})", c.id) for c in found]
        picker = gr.update(choices=choices, value=None)  # nothing picked: the last pick may be gone
        return cluster_cards(found, _image), picker, picker

    cluster_outputs = [ui.clusters, ui.cluster_id, ui.split_id]

    @shown_at(4)
    def indexed(path: str, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        user = user_of(request)
        root = act.allowed_folder(path, PhotoAccess.for_user(assistant.settings, user))
        done = assistant.index_library(root, user=user, progress=act.progress_callback(progress))
        cards, *pickers = shown_clusters(request)
        nobody = "" if assistant.people(user=user) else "; nobody to name: every face found is someone you taught"
        summary = index_summary(done, root)
        first, _, rest = summary.partition("\n")
        return "\n".join(filter(None, [first + nobody, rest])), cards, *pickers

    @shown_at(4)
    def named(number: int | None, who: str, info: str, request: gr.Request) -> tuple[Any, ...]:
        c = assistant.name_cluster(_picked(number), who, info=info or None, user=user_of(request))
        return f"named cluster {c.id} **{c.name}** ({count(c.size, 'face')})", *shown_clusters(request)

    @shown_at(4)
    def merged(ids: str, request: gr.Request) -> tuple[Any, ...]:
        c = assistant.merge_clusters(act.numbers(ids, "cluster ids"), user=user_of(request))
        return f"merged into cluster {c.id} ({count(c.size, 'face')})", *shown_clusters(request)

    @shown_at(4)
    def splitted(number: int | None, faces: str, request: gr.Request) -> tuple[Any, ...]:
        c = assistant.split_cluster(_picked(number), act.numbers(faces, "face ids"), user=user_of(request))
        return f"new cluster {c.id} ({count(c.size, 'face')})", *shown_clusters(request)

    @shown_at(2)
    def searched(who: str, words: str, start: str, end: str, request: gr.Request) -> tuple[str, list[Any]]:
        found = assistant.search_photos(
            people=[p.strip() for p in who.split(",") if p.strip()],
            text=words.strip() or None,
            since=act.parse_day(start, "since"),
            until=act.parse_day(end, "until"),
            user=user_of(request),
        )
        load = assistant.parts.photos.load  # checked decode: EXIF rotation, HEIC, size limits
        shown = [
            (_drawn(load(h.path), h.regions, h.matched_regions), ", ".join(h.people) or _name(h.path)) for h in found
        ]
        return f"{count(len(found), 'photo')} found", shown

    @shown_at(1)
    def asked(q: str, request: gr.Request) -> str:
        if not q.strip():
            return "⚠ no question — type one, e.g. When was I last with Rose?"
        result = assistant.ask_library(q, user=user_of(request))
        return library_answer(result, assistant.parts.photos.load)

    def thinking(q: str) -> str:
        return "<p>looking at your photos…</p>" if q.strip() else gr.skip()

    ui.index.click(indexed, ui.folder, [ui.report, *cluster_outputs])
    ui.name_it.click(named, [ui.cluster_id, ui.cluster_name, ui.cluster_info], [ui.edited, *cluster_outputs])
    ui.merge.click(merged, ui.merge_ids, [ui.edited, *cluster_outputs])
    ui.split.click(splitted, [ui.split_id, ui.split_faces], [ui.edited, *cluster_outputs])
    ui.search.click(searched, [ui.people, ui.text, ui.since, ui.until], [ui.found, ui.hits])
    for ask in (ui.question.submit, ui.ask.click):
        ask(thinking, ui.question, ui.answer, queue=False).then(asked, ui.question, ui.answer)
    page.load(shown_at(3)(shown_clusters), None, cluster_outputs)


def _picked(number: int | None) -> int:
    from rcmu_agent.errors import InvalidInputError

    if number is None:
        raise InvalidInputError("no cluster picked", "pick one in the Cluster list (its id is on its card)")
    return int(number)


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name
