"""The web app's Library tab: index a folder, name the faces nobody has named, search, ask over photos.

Folders are indexed only inside the allowed folders (`RCMU_ALLOWED_ROOTS`, `{user}` expanded per login).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rcmu_agent._photo_access import PhotoAccess
from rcmu_agent.annotate import shrink
from rcmu_agent.assistant import Assistant
from rcmu_agent.tools import _web_handlers as act

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
    clusters: gr.Gallery
    cluster_id: gr.Number
    cluster_name: gr.Textbox
    cluster_info: gr.Textbox
    name_it: gr.Button
    merge_ids: gr.Textbox
    merge: gr.Button
    split_id: gr.Number
    split_faces: gr.Textbox
    split: gr.Button
    people: gr.Textbox
    text: gr.Textbox
    since: gr.Textbox
    until: gr.Textbox
    search: gr.Button
    hits: gr.Gallery
    question: gr.Textbox
    answer: gr.Markdown


def _layout() -> _Controls:
    """Folder indexing, then naming, merging and splitting face clusters, then search and questions."""
    with gr.Row():
        folder = gr.Textbox(label="Folder of photos (inside the allowed folders)", elem_id="library-folder")
        index = gr.Button("Index", variant="primary", elem_id="library-index")
    report = gr.Markdown(elem_id="library-report")
    gr.Markdown("### Faces nobody has named yet")
    clusters = gr.Gallery(label="Clusters (largest first)", columns=6, height=220, elem_id="library-clusters")
    with gr.Row():
        cluster_id = gr.Number(label="Cluster", precision=0, elem_id="library-name-id")
        cluster_name = gr.Textbox(label="Name them", elem_id="library-name")
        cluster_info = gr.Textbox(label="Info (optional)")
        name_it = gr.Button("Name", elem_id="library-name-go")
    with gr.Row():
        merge_ids = gr.Textbox(label="Merge clusters (ids)", elem_id="library-merge")
        merge = gr.Button("Merge", elem_id="library-merge-go")
        split_id = gr.Number(label="Split cluster", precision=0, elem_id="library-split-id")
        split_faces = gr.Textbox(label="Face ids to move out", elem_id="library-split-faces")
        split = gr.Button("Split", elem_id="library-split-go")
    gr.Markdown("### Search and ask")
    with gr.Row():
        people = gr.Textbox(label="People (comma separated, all together)", elem_id="search-people")
        text = gr.Textbox(label="Text", elem_id="search-text")
        since = gr.Textbox(label="Since (YYYY-MM-DD)", elem_id="search-since")
        until = gr.Textbox(label="Until (YYYY-MM-DD)", elem_id="search-until")
        search = gr.Button("Search", elem_id="search-go")
    hits = gr.Gallery(label="Photos", columns=4, height=320, elem_id="search-hits")
    question = gr.Textbox(
        label="Ask about your photos", placeholder="When was I last with Rose and Kit?", elem_id="library-question"
    )
    answer = gr.Markdown(elem_id="library-answer")
    return _Controls(
        folder=folder, index=index, report=report, clusters=clusters, cluster_id=cluster_id,
        cluster_name=cluster_name, cluster_info=cluster_info, name_it=name_it, merge_ids=merge_ids, merge=merge,
        split_id=split_id, split_faces=split_faces, split=split, people=people, text=text, since=since,
        until=until, search=search, hits=hits, question=question, answer=answer,
    )  # fmt: skip


def library_tab(assistant: Assistant, user_of: Callable[[gr.Request], str], readable: Callable[..., Any]) -> None:
    ui = _layout()

    @readable
    def indexed(path: str, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[str, list[Any]]:
        user = user_of(request)
        root = act.allowed_folder(path, PhotoAccess.for_user(assistant.settings, user))
        done = assistant.index_library(root, user=user, progress=act.progress_callback(progress))
        skipped = f", {len(done.skipped)} skipped" if done.skipped else ""
        summary = (
            f"{done.photos} photos indexed ({done.added} new, {done.unchanged} unchanged{skipped}), {done.faces} faces"
        )
        found = shown_clusters(request)
        return summary + ("" if found else "; nobody to name: every face found is someone you taught"), found

    @readable
    def shown_clusters(request: gr.Request) -> list[Any]:
        found = assistant.people(user=user_of(request))
        return [
            (_image(c.crops[0]), f"cluster {c.id}: {c.size} face(s), faces {c.faces[:8]}") for c in found if c.crops
        ]

    @readable
    def named(number: float | None, who: str, info: str, request: gr.Request) -> tuple[str, list[Any]]:
        c = assistant.name_cluster(int(number or 0), who, info=info or None, user=user_of(request))
        return f"named cluster {c.id} **{c.name}** ({c.size} faces)", shown_clusters(request)

    @readable
    def merged(ids: str, request: gr.Request) -> tuple[str, list[Any]]:
        c = assistant.merge_clusters(act.numbers(ids, "cluster ids"), user=user_of(request))
        return f"merged into cluster {c.id} ({c.size} faces)", shown_clusters(request)

    @readable
    def splitted(number: float | None, faces: str, request: gr.Request) -> tuple[str, list[Any]]:
        c = assistant.split_cluster(int(number or 0), act.numbers(faces, "face ids"), user=user_of(request))
        return f"new cluster {c.id} ({c.size} faces)", shown_clusters(request)

    @readable
    def searched(who: str, words: str, start: str, end: str, request: gr.Request) -> list[Any]:
        found = assistant.search_photos(
            people=[p.strip() for p in who.split(",") if p.strip()],
            text=words.strip() or None,
            since=act.parse_day(start, "since"),
            until=act.parse_day(end, "until"),
            user=user_of(request),
        )
        load = assistant.parts.photos.load  # checked decode: EXIF rotation, HEIC, size limits
        return [(_drawn(load(h.path), h.regions, h.matched_regions), ", ".join(h.people) or h.path) for h in found]

    @readable
    def asked(q: str, request: gr.Request) -> str:
        from rcmu_agent.tools._common import answer_text

        result = assistant.ask_library(q, user=user_of(request))
        cited = [
            f"- [{c.index}] {c.name or 'photo'} in `{c.path}`"
            + (f" at {tuple(round(v) for v in c.box)}" if c.box else "")
            for c in result.photo_citations
        ]
        return answer_text(result) + ("\n\n" + "\n".join(cited) if cited else "")

    ui.index.click(indexed, ui.folder, [ui.report, ui.clusters])
    ui.name_it.click(named, [ui.cluster_id, ui.cluster_name, ui.cluster_info], [ui.report, ui.clusters])
    ui.merge.click(merged, ui.merge_ids, [ui.report, ui.clusters])
    ui.split.click(splitted, [ui.split_id, ui.split_faces], [ui.report, ui.clusters])
    ui.search.click(searched, [ui.people, ui.text, ui.since, ui.until], ui.hits)
    ui.question.submit(asked, ui.question, ui.answer)
