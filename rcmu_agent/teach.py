"""Memory changes asked for in the conversation: what a turn asks (`Intent`), checked against the
thread's photo and the memory, proposed as a `MemoryChange`, and written once confirmed.

The graph's teaching path (`rcmu_agent._teach_nodes`) and `Assistant.remember(..., region=...)` both
come here, so a reference cut from a region is the same crop, checked the same way, wherever it is
taught from. Writes go through the memory store (atomic, under its lock); the user is always the one
the caller decided (the run's authenticated user), never a word of the turn.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from typing import Any

from PIL import Image

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.parts import Parts
from rcmu_agent.photos import Inbound
from rcmu_agent.prompt import clean_text, shown_text
from rcmu_agent.schema import Box, ContextEntry, Entity, MemoryChange, normalize_category
from rcmu_agent.teach_dialogue import EDITABLE
from rcmu_agent.teach_grammar import Intent, Target

__all__ = [
    "apply_change",
    "crop_region",
    "edited",
    "find_entity",
    "propose",
    "region_change",
    "remember_region",
    "resolve_region",
]

_THUMBNAIL = 160  # pixels, the longer side: enough to recognise a face in a chat, a few KB in a checkpoint
_MIN_CROP = 320  # a face crop smaller than this is enlarged, so detection finds it again in the crop alone


def resolve_region(entries: Sequence[ContextEntry], target: Target) -> ContextEntry | None:
    """The numbered region a turn points at: by `[n]`, by position (when unambiguous) or the photo's
    only one. None only for "this" on a photo with no region at all (the whole photo, for a thing)."""
    regions = sorted((e for e in entries if e.region is not None and e.index is not None), key=lambda e: e.index or 0)
    numbers = ", ".join(f"[{e.index}]" for e in regions)
    if isinstance(target, int):
        for entry in regions:
            if entry.index == target:
                return entry
        shown = f"the photo's regions are {numbers}" if regions else "the photo shows no numbered region"
        raise InvalidInputError(f"there is no region [{target}]: {shown}", "name one of the numbers the answer shows")
    if target == "only":
        if len(regions) > 1:
            raise InvalidInputError(
                f"the photo shows {len(regions)} regions ({numbers}), so 'this' could be any of them",
                "say which one by its number, e.g. '[1] is Rose'",
            )
        return regions[0] if regions else None
    if not regions:
        raise InvalidInputError("the photo shows no region to point at", "ask about the photo first, or give a box")
    centre = {id(e): (e.box[0] + e.box[2]) / 2 for e in regions if e.box}
    ordered = sorted(regions, key=lambda e: centre[id(e)], reverse=target == "right")
    if len(ordered) > 1:
        first, second = ordered[0], ordered[1]
        x1, _, x2, _ = first.box  # type: ignore[misc]
        if x1 <= centre[id(second)] <= x2:  # the next one stands in the same column: not clearly "the one"
            raise InvalidInputError(
                f"'the one on the {target}' could be [{first.index}] or [{second.index}]",
                f"say which one by its number, e.g. '[{first.index}] is …'",
            )
    return ordered[0]


def crop_region(image: Image.Image, box: Box, category: str) -> Image.Image:
    """The part of the photo that becomes the reference: a person's face with room around it (half its
    size on each side, so a detector finds it again in the crop alone, enlarged when small), a thing's
    box as it is."""
    x1, y1, x2, y2 = box
    if category == "person":
        dx, dy = (x2 - x1) / 2, (y2 - y1) / 2
        x1, y1, x2, y2 = x1 - dx, y1 - dy, x2 + dx, y2 + dy
    left, top = max(0, round(x1)), max(0, round(y1))
    right, bottom = min(image.width, round(x2)), min(image.height, round(y2))
    crop = image.convert("RGB").crop((left, top, max(right, left + 1), max(bottom, top + 1)))
    if category == "person" and max(crop.size) < _MIN_CROP:
        scale = _MIN_CROP / max(crop.size)
        crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS)
    return crop


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _thumbnail(image: Image.Image) -> str:
    small = image.copy()
    small.thumbnail((_THUMBNAIL, _THUMBNAIL))
    return "data:image/jpeg;base64," + base64.b64encode(_jpeg(small, 80)).decode()


def find_entity(parts: Parts, user: str, name: str, *, first_name: bool = True) -> Entity | None:
    """The user's entity called `name` (full name or id; with `first_name`, also a first name only one
    entity has: "Rose moved to Lisbon"). Naming a region takes the full name: "Rose Smith" is not Rose."""
    memory = parts.memory
    try:
        return memory.get(user, name)
    except NotFoundError:
        if not first_name:
            return None
    key = " ".join(name.lower().split())
    named = [e for e in memory.named_in(user, name) if e.name.lower().split()[:1] == key.split()[:1]]
    return named[0] if len(named) == 1 else None


def _known(parts: Parts, user: str, name: str) -> Entity:
    entity = find_entity(parts, user, name)
    if entity is None:
        raise InvalidInputError(  # a ValueError: LangGraph Server shows its message to the client
            f"nobody called {shown_text(name)!r} is in memory", "ask 'who do you know?' for the names"
        )
    return entity


def _with_name(name: str, info: str | None) -> str:
    """Info as the README writes it ("Rose, my sister; …"): the model reads info, not the name."""
    if not info:
        return name
    return info if name.split()[0].lower() in info.lower() else f"{name}, {info}"


def propose(
    parts: Parts,
    user: str,
    intent: Intent,
    *,
    photo: str | None,
    entries: Sequence[ContextEntry],
) -> MemoryChange:
    """The change `intent` asks for, checked: the region exists, a person's region holds a face (its crop,
    kept in the user's vault, is the proposal's reference), the entity to update or forget is known."""
    if intent.action == "list":
        return MemoryChange(action="list", status="done")
    if intent.action in ("forget", "update"):
        entity = _known(parts, user, intent.name or "")
        info = entity.info
        if intent.action == "update":
            fact = clean_text(intent.info or "", "info")
            info = f"{entity.info.rstrip(' .')}. {fact}" if entity.info else fact
        return MemoryChange(
            action=intent.action, name=entity.name, category=entity.category, info=info, entity_id=entity.id
        )
    name = clean_text(intent.name or "", "name", max_chars=100)
    if photo is None:
        raise InvalidInputError(
            f"there is no photo in this conversation to find {shown_text(name)} in",
            "send the photo with the question first, then name a region of the answer",
        )
    entry = resolve_region(entries, intent.target)
    existing = find_entity(parts, user, name, first_name=False)
    seen = entry.category if entry is not None else ""
    default = seen if seen not in ("", "object") else "person"
    info = _with_name(name, intent.info) if intent.info or existing is None else existing.info
    region, box = (entry.index, entry.box) if entry is not None else (None, None)
    return _remember(parts, user, existing, name, intent.category, default, info, region, box, photo)


def _remember(
    parts: Parts,
    user: str,
    existing: Entity | None,
    name: str,
    category: str | None,
    default: str,
    info: str,
    region: int | None,
    box: Box | None,
    photo: str,
) -> MemoryChange:
    """A `remember` proposal, checked the same way from a sentence or a region given directly: a name
    already known keeps its category (another one is refused) and gets this photo added."""
    kind = normalize_category(category or "") or None
    if existing is not None and kind and kind != existing.category:
        raise InvalidInputError(
            f"{shown_text(existing.name)!r} is already remembered as a {shown_text(existing.category)}",
            "leave the category out to add this photo to them, or pick another name",
        )
    change = MemoryChange(
        action="remember",
        name=existing.name if existing else name,
        category=kind or (existing.category if existing else default),
        info=info,
        region=region,
        box=box,
        photo=photo,
        entity_id=existing.id if existing else None,
        existing=existing is not None,
    )
    return _with_reference(parts, user, change)


def region_change(
    parts: Parts,
    user: str,
    *,
    name: str,
    info: str | None,
    category: str | None,
    photo: str,
    box: Box | None = None,
    number: int | None = None,
    entries: Sequence[ContextEntry] = (),
) -> MemoryChange:
    """A `remember` from a region given directly (`Assistant.remember(..., region=...)`, the tools): a
    box of `photo`, or the `[number]` of a thread's last answer (`entries`), checked as `propose` checks."""
    from rcmu_agent.regions import check_box

    image = parts.photos.image(user, photo)
    if number is not None:
        entry = resolve_region(entries, number)
        box = entry.box if entry is not None else None
    elif box is not None:
        box = check_box(tuple(float(v) for v in box), image.size, strict=True)  # type: ignore[arg-type]
    name = clean_text(name, "name", max_chars=100)
    existing = find_entity(parts, user, name, first_name=False)
    fact = clean_text(info, "info") if info else existing.info if existing else name
    return _remember(parts, user, existing, name, category, "person", fact, number, box, photo)


def remember_region(
    parts: Parts,
    user: str,
    *,
    name: str,
    info: str | None,
    category: str | None,
    photo: str | None,
    region: Sequence[float] | str | int,
    thread: dict[str, Any] | None,
) -> Entity:
    """Teach `name` from a region and write it at once (a caller that already confirmed: a host model's
    `remember` tool call, `Assistant.remember`): a box of `photo`, or `[n]` of the thread's last answer
    (`thread`: its state, already checked to be the user's), whose photo is then the one used."""
    from rcmu_agent.citations import number_regions

    number = _region_number(region)
    entries: list[ContextEntry] = []
    if thread is not None:
        entries = number_regions([ContextEntry.model_validate(e) for e in thread.get("entries") or []])
        if photo is None or number is not None:
            if photo is not None and photo != thread.get("photo"):
                raise InvalidInputError(
                    f"[{number}] is a region of the thread's photo, not of the photo given",
                    "leave the photo out to use the thread's, or give a box of the photo instead",
                )
            photo = thread.get("photo")
    if photo is None:
        raise InvalidInputError(
            "a region was given without a photo", "give the photo (and a box of it), or a thread whose answer shows [n]"
        )
    if number is not None and thread is None:  # [n] as an answer about this photo numbers its regions now
        entries = _numbered_regions(parts, user, photo)
    box: Box | None = None
    if number is None and not isinstance(region, str | int):  # a box (`_region_number` checked its length)
        x1, y1, x2, y2 = (float(v) for v in region)
        box = (x1, y1, x2, y2)
    change = region_change(
        parts,
        user,
        name=name,
        info=info,
        category=category,
        photo=photo,
        box=box,
        number=number,
        entries=entries,
    )
    done = apply_change(parts, user, change)
    return parts.memory.get(user, done.entity_id or change.name or name)


def _numbered_regions(parts: Parts, user: str, photo: str) -> list[ContextEntry]:
    """The photo's regions numbered as an answer about it shows them (`ask_about_photo`, `rcmu ask`)."""
    from rcmu_agent.citations import number_regions

    recognizer = parts.recognizer
    seen = recognizer.see(parts.photos.image(user, photo), recognizer.object_categories(user), source=photo)
    return number_regions(recognizer.match(user, seen))


def _region_number(region: Sequence[float] | str | int) -> int | None:
    """`3`, `"3"` or `"[3]"`: the number of a region of a thread's last answer; None for a box."""
    if isinstance(region, bool):
        raise InvalidInputError("a region is a box or a number such as '[2]'", "give x1,y1,x2,y2 or '[n]'")
    if isinstance(region, int):
        return region
    if isinstance(region, str):
        found = re.fullmatch(r"\s*\[?\s*(\d+)\s*\]?\s*", region)
        if found is None:
            raise InvalidInputError(f"region {region!r} is not understood", "give a box x1,y1,x2,y2 or a number '[n]'")
        return int(found.group(1))
    if len(region) != 4:
        raise InvalidInputError(f"a box has 4 numbers, got {len(region)}", "give pixel corners x1,y1,x2,y2")
    return None


def _with_reference(parts: Parts, user: str, change: MemoryChange) -> MemoryChange:
    """The change with its crop: checked (a face for a person), kept in the vault, shown as a thumbnail."""
    image = parts.photos.image(user, change.photo)
    box = change.box or (0.0, 0.0, float(image.width), float(image.height))
    category = change.category or "person"
    if category == "person" and change.box is None:
        raise InvalidInputError("the photo shows no face to remember a person by", "send a photo where the face shows")
    crop = crop_region(image, box, category)
    where = f"region [{change.region}]" if change.region is not None else "the region"
    try:
        parts.recognizer.describe_reference(crop, category, where)
    except InvalidInputError:
        raise InvalidInputError(
            f"no face in {where}, so it cannot be remembered as a person",
            "name a region around a face, or say what it is ('[2] is Bella, my dog')",
        ) from None
    reference = parts.photos.ingest(user, Inbound(_jpeg(crop), name=f"region-{change.region or 0}.jpg"))
    return change.model_copy(update={"reference": reference, "thumbnail": _thumbnail(crop)})


def edited(parts: Parts, user: str, change: MemoryChange, edit: dict[str, Any]) -> MemoryChange:
    """The proposal with a front end's edit (`name`, `info`, `category`), checked again as proposed."""
    unknown = {k for k in set(edit) - EDITABLE if not (k == "region" and edit[k] == change.region)}
    if unknown:
        raise InvalidInputError(
            f"an edit of the proposal cannot change {', '.join(sorted(map(str, unknown)))}",
            "edit only name, info and category; to use another region, answer no and name it again",
        )
    update: dict[str, Any] = {}
    if edit.get("name") is not None:
        update["name"] = clean_text(str(edit["name"]), "name", max_chars=100)
    if edit.get("info") is not None:
        update["info"] = clean_text(str(edit["info"]), "info")
    if edit.get("category") is not None:
        update["category"] = normalize_category(clean_text(str(edit["category"]), "category", max_chars=50))
    new = change.model_copy(update=update)
    if change.action == "remember" and new.category != change.category:
        new = _with_reference(parts, user, new)
    return new


def apply_change(parts: Parts, user: str, change: MemoryChange) -> MemoryChange:
    """Write a confirmed change to `user`'s memory (one locked, atomic write) and say what was done."""
    from rcmu_agent.memory import ReferencePhoto

    memory = parts.memory
    if change.action == "forget":
        gone = memory.forget(user, change.entity_id or change.name or "")
        return change.model_copy(update={"status": "done", "entity_id": gone.id})
    if change.action == "update":
        old = _known(parts, user, change.entity_id or change.name or "")
        entity = memory.remember(user, change.name or old.name, change.info or old.info, old.category, [])
        return change.model_copy(update={"status": "done", "entity_id": entity.id})
    data = parts.vault.get(user, change.reference)
    image = parts.photos.image(user, change.reference)
    category = change.category or "person"
    ref = parts.recognizer.describe_reference(image, category, f"region [{change.region}]")
    photo = ReferencePhoto(data, ".jpg", face_descriptor=ref.face_descriptor, image_embedding=ref.image_embedding)
    entity = memory.remember(user, change.name or "", change.info or change.name or "", category, [photo])
    return change.model_copy(update={"status": "done", "entity_id": entity.id})
