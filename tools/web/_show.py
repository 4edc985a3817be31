"""HTML the page draws itself: face clusters as cards, and a library answer with its photos and boxes.

Gradio's gallery puts a caption under its tile's edge (a cluster id nobody could read) and its Markdown
has no way to tie `[n]` to a box; plain HTML does both. Images go in as small JPEG `data:` URLs, so the
page never gets a file URL into the home, and every name, path and text is escaped. Boxes are placed in
percent of the photo as it is displayed, from the photo's own pixel coordinates (never the collage's).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rcmu_agent.annotate import shrink
from rcmu_agent.prompt import shown_text
from rcmu_agent.schema import Cluster, IndexReport, LibraryAnswer, PhotoCitation
from rcmu_agent.tools.web._page import count

__all__ = ["cluster_cards", "data_url", "index_summary", "library_answer"]

_CITE = re.compile(r"\[(\d+)\]")


def data_url(image: Any, side: int) -> str:
    """`image` shrunk to `side` pixels as an inline JPEG."""
    small, _ = shrink(image.convert("RGB"), side)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def cluster_cards(clusters: Sequence[Cluster], crop: Callable[[str], Any]) -> str:
    """One card per cluster: a face, its id, how many faces, and the face ids (to split some out)."""
    if not clusters:
        return '<p class="rcmu-status">No unnamed faces: index a folder to find some.</p>'
    cards = []
    for c in clusters:
        title = f"Cluster {c.id}" + (f" — {c.name}" if c.name else "")
        face = ""
        if c.crops:
            alt = html.escape(f"a face from cluster {c.id}")
            face = f'<img src="{data_url(crop(c.crops[0]), 200)}" alt="{alt}">'
        shown = ", ".join(str(f) for f in c.faces[:12]) + (", …" if len(c.faces) > 12 else "")
        cards.append(
            f'<li class="rcmu-card" data-cluster="{c.id}">{face}<h4>{html.escape(title)}</h4>'
            f"<p>{count(c.size, 'face')}</p><p>face ids: {html.escape(shown)}</p></li>"
        )
    return f'<ul class="rcmu-cards" aria-label="face clusters">{"".join(cards)}</ul>'


def index_summary(done: IndexReport, root: Path) -> str:
    """What an index run did, one line, then each skipped file by its place in the folder and why."""
    parts = [f"{count(done.added, 'new photo')}", f"{done.unchanged} unchanged"]
    if done.skipped:
        parts.append(f"{len(done.skipped)} skipped")
    line = f"{count(done.photos, 'photo')} indexed ({', '.join(parts)}), {count(done.faces, 'face')} found"
    skipped = [
        f"- skipped **{html.escape(_inside(s.path, root))}**: {_reason(s.reason, s.path, root)}" for s in done.skipped
    ]
    return "\n".join([line, *skipped])


def _inside(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _reason(reason: str, path: str, root: Path) -> str:
    return html.escape(" ".join(reason.replace(path, _inside(path, root)).replace(str(root), ".").split()))


def library_answer(answer: LibraryAnswer, load: Callable[[str], Any], note: str = "") -> str:
    """The answer's text with each `[n]` a button, the cited photos with their numbered boxes, and every
    cited region listed (photo file and box in that photo's pixels)."""
    cited: dict[int, PhotoCitation] = {}
    for c in answer.photo_citations:
        cited.setdefault(c.index, c)
    text = shown_text(answer.text, citations=True, single_line=False) or "(the model returned no text)"
    paragraphs = "".join(f"<p>{_buttons(html.escape(p), cited)}</p>" for p in text.split("\n") if p.strip())
    by_photo: dict[str, list[PhotoCitation]] = {}
    for c in cited.values():
        by_photo.setdefault(c.photo_id, []).append(c)
    figures = []
    for number, (pid, marks) in enumerate(by_photo.items(), start=1):
        image = load(marks[0].path)
        width, height = image.size
        boxes = "".join(_box(c, width, height) for c in marks if c.box is not None)
        name = html.escape(Path(marks[0].path).name)
        who = html.escape(", ".join(f"[{c.index}] {c.name or 'the whole photo'}" for c in marks))
        figures.append(
            f'<figure class="rcmu-figure" data-photo="{html.escape(pid)}"><div class="rcmu-photo">'
            f'<img src="{data_url(image, 900)}" alt="photo {number}: {name}">{boxes}</div>'
            f"<figcaption>photo {number}: {name} — {who}</figcaption></figure>"
        )
    listed = "".join(f"<li>{_listed(c)}</li>" for c in cited.values())
    parts = [f"<p>{html.escape(note)}</p>" if note else "", paragraphs]
    if figures:
        parts.append(f'<div class="rcmu-figures">{"".join(figures)}</div>')
    if listed:
        parts.append(f'<ul class="rcmu-cited" aria-label="cited regions">{listed}</ul>')
    if answer.invalid_citations:
        numbers = ", ".join(f"[{n}]" for n in answer.invalid_citations)
        parts.append(f"<p>⚠ the answer cites {numbers}, which match no photo or region: do not trust them</p>")
    return f'<div class="rcmu-answer">{"".join(parts)}</div>'


def _buttons(text: str, cited: dict[int, PhotoCitation]) -> str:
    def button(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n not in cited:
            return m.group(0)
        what = html.escape(cited[n].name or "the whole photo", quote=True)
        return (
            f'<button type="button" class="rcmu-cite" data-n="{n}" aria-pressed="false" '
            f'aria-label="citation {n}: {what}, show its box">[{n}]</button>'
        )

    return _CITE.sub(button, text)


def _box(c: PhotoCitation, width: int, height: int) -> str:
    assert c.box is not None
    x1, y1, x2, y2 = c.box
    left, top = 100 * x1 / width, 100 * y1 / height
    w, h = 100 * (x2 - x1) / width, 100 * (y2 - y1) / height
    label = html.escape(f"[{c.index}] {c.name or c.category}")
    style = f"left:{left:.2f}%;top:{top:.2f}%;width:{w:.2f}%;height:{h:.2f}%"
    return f'<div class="rcmu-box" data-n="{c.index}" style="{style}"><span>{label}</span></div>'


def _listed(c: PhotoCitation) -> str:
    where = f"at ({', '.join(str(round(v)) for v in c.box)})" if c.box is not None else "(the whole photo)"
    name = html.escape(c.name or c.category)
    return f"[{c.index}] {name} in {html.escape(Path(c.path).name)} {where}"
