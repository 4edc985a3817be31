"""Searching the photo library: people (all of them together), text, dates, combined; and the
photos a question is about (`retrieve`, for answering over the library).

Filters run in the sidecar's database (indexed names and dates); text similarity is an exact dot product against the
user's MiniLM vectors, read from Chroma once per change of the library and kept in memory (10,000
photos x 384 floats = 15 MB), so a query costs one sentence embedding plus a matrix-vector product.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import numpy as np

from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.memory._records import WORD, name_key
from rcmu_agent.memory.library._names import LibraryNames
from rcmu_agent.memory.library._store import TEXT_COLLECTION, LibraryStore
from rcmu_agent.prompt import clean_text
from rcmu_agent.schema import PhotoHit, Place, Region
from rcmu_agent.users import check_user

if TYPE_CHECKING:
    from rcmu_agent.memory.store import MemoryStore

__all__ = ["LibrarySearch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Vectors:
    version: str
    rows: dict[str, int]
    matrix: np.ndarray


class LibrarySearch:
    """Queries over one home's library; the text vectors stay in memory between queries."""

    def __init__(self, store: LibraryStore, names: LibraryNames, memory: MemoryStore) -> None:
        self.store, self.names, self._memory = store, names, memory
        self.settings, self.db = store.settings, store.db
        self._vectors: dict[str, _Vectors] = {}
        self._vectors_lock = threading.Lock()

    def search(
        self,
        user: str,
        *,
        people: Sequence[str] = (),
        text: str | None = None,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        limit: int = 10,
        min_similarity: float | None = None,
    ) -> list[PhotoHit]:
        """Photos showing every one of `people`, taken in [since, until], ranked by similarity to `text`
        (only those at least `min_similarity`, default `settings.library_min_similarity`), else newest first."""
        check_user(user)
        if not 1 <= limit <= 1000:
            raise InvalidInputError(f"limit {limit} is out of range", "ask for 1 to 1000 photos")
        self.names.refresh_if_free(user)
        start, end = _bound(since, is_end=False), _bound(until, is_end=True)
        if start and end and start > end:
            raise InvalidInputError(f"since ({start}) is after until ({end})", "swap the dates")
        matched: dict[str, set[int]] = {}
        candidates: set[str] | None = None
        for person in people:
            hits = self._photos_with(user, person)
            candidates = set(hits) if candidates is None else candidates & set(hits)
            for photo_id, region_ids in hits.items():
                matched.setdefault(photo_id, set()).update(region_ids)
        if candidates is not None and not candidates:
            return []
        where, params = ['"user"=?'], [user]
        if start:
            where.append("taken_at >= ?")
            params.append(start)
        if end:
            where.append("taken_at <= ?")
            params.append(end)
        sql = (
            f"SELECT id, taken_at FROM photos WHERE {' AND '.join(where)} ORDER BY taken_at IS NULL, taken_at DESC, id"
        )
        if text is None and candidates is None:
            rows = self.db.rows(f"{sql} LIMIT ?", (*params, limit))
            return self._hits(user, [(r["id"], 1.0) for r in rows], matched, None)
        ids = [r["id"] for r in self.db.rows(sql, params) if candidates is None or r["id"] in candidates]
        if text is None:
            return self._hits(user, [(i, 1.0) for i in ids[:limit]], matched, None)
        query = clean_text(text, "text", max_chars=self.settings.max_text_chars)
        floor = self.settings.library_min_similarity if min_similarity is None else min_similarity
        scored = self._rank(user, query, ids, floor)[:limit]
        return self._hits(user, scored, matched, query)

    def retrieve(self, user: str, question: str, limit: int) -> list[PhotoHit]:
        """The photos a question is about: people it names (all together, else any of them), ranked by
        similarity to the question. Without people, by similarity alone (above the floor, else the closest)."""
        people = [e.name for e in self._memory.named_in(user, question) if e.category == "person"]
        hits: list[PhotoHit] = []
        if people:
            hits = self.search(user, people=people, text=question, limit=limit, min_similarity=-1.0)
            if not hits:  # nobody photographed together: each of them
                for person in people:
                    hits += self.search(user, people=[person], text=question, limit=limit, min_similarity=-1.0)
                hits = sorted({h.id: h for h in hits}.values(), key=lambda h: -h.score)
        for floor in (None, -1.0):  # a question naming nobody (or nobody photographed): by meaning alone
            if not hits or (not people and len(hits) < limit):
                have = {h.id for h in hits}
                more = self.search(user, text=question, limit=limit, min_similarity=floor)
                hits += [h for h in more if h.id not in have]
        if not hits:
            raise NotFoundError(
                f"the photo library of user {user!r} is empty", "index your photos first with `rcmu index DIR`"
            )
        return hits[:limit]

    # ---- people ----------------------------------------------------------------------------------
    def known_people(self, user: str) -> list[str]:
        """Names recognised in the user's photos."""
        rows = self.db.rows('SELECT DISTINCT name FROM regions WHERE "user"=? AND name IS NOT NULL', (user,))
        return sorted(r["name"] for r in rows)

    def _photos_with(self, user: str, person: str) -> dict[str, set[int]]:
        """photo id -> region ids where `person` (a full name, or any of its words: "Rose", "Leslie") is."""
        key = name_key(clean_text(person, "person", max_chars=100))
        if not key:
            raise InvalidInputError(f"{person!r} is not a name", "give a person's name, e.g. Rose")
        names = self.db.rows('SELECT DISTINCT name_key FROM regions WHERE "user"=? AND name_key IS NOT NULL', (user,))
        keys = [r["name_key"] for r in names if f" {key} " in f" {r['name_key']} "]
        if not keys:  # someone the memory knows, in none of the photos, is no error: the search finds nothing
            if _has_name(key, [e.name for e in self._memory.named_in(user, person) if e.category == "person"]):
                return {}  # the common case, found through the memory's name index without listing it
            remembered = [e.name for e in self._memory.entities(user) if e.category == "person"]
            if _has_name(key, remembered):
                return {}
            raise self._nobody_called(user, person, key, remembered)
        marks = ",".join("?" * len(keys))
        out: dict[str, set[int]] = {}
        for r in self.db.rows(
            f'SELECT photo_id, id FROM regions WHERE "user"=? AND name_key IN ({marks})', (user, *keys)
        ):
            out.setdefault(r["photo_id"], set()).add(int(r["id"]))
        return out

    def _nobody_called(self, user: str, person: str, key: str, remembered: list[str]) -> NotFoundError:
        """The error for a name nobody has: the closest known name when there is one (a typo is the
        likely cause), else who is in the photos, so a misspelt name never reads as "no photo matches"."""
        in_photos = self.known_people(user)
        closest = _closest_name(key, sorted({*in_photos, *remembered}))
        if closest is not None:
            return NotFoundError(f"nobody called {person!r} is known", f"did you mean {closest}?")
        known = ", ".join(in_photos[:20]) + (f" and {len(in_photos) - 20} more" if len(in_photos) > 20 else "")
        return NotFoundError(
            f"nobody called {person!r} is known (known: {known or 'nobody yet'})",
            "teach them with `rcmu remember`, or name a face cluster with `rcmu name CLUSTER NAME`",
        )

    # ---- text ------------------------------------------------------------------------------------
    def _rank(self, user: str, query: str, ids: Sequence[str], floor: float) -> list[tuple[str, float]]:
        vectors = self._text_vectors(user)
        rows = [(i, vectors.rows[i]) for i in ids if i in vectors.rows]
        if not rows:
            return []
        q = self.store.text.embed([query])[0]
        sims = vectors.matrix[[r for _, r in rows]] @ q
        order = np.argsort(-sims, kind="stable")
        return [(rows[j][0], float(sims[j])) for j in order if sims[j] >= floor]

    def _text_vectors(self, user: str) -> _Vectors:
        version = self.db.get_meta(user, "version") or "0"
        cached = self._vectors.get(user)
        if cached is not None and cached.version == version:
            return cached
        with self._vectors_lock:
            got = self.store.col(TEXT_COLLECTION).get(where={"user": user}, include=["embeddings", "metadatas"])
            embeddings = got["embeddings"]
            matrix = np.asarray(embeddings if embeddings is not None and len(embeddings) else np.zeros((0, 384)))
            rows = {m["photo_id"]: n for n, m in enumerate(got["metadatas"] or [])}
            loaded = _Vectors(version, rows, matrix.astype(np.float32))
            self._vectors[user] = loaded
        return loaded

    # ---- results ---------------------------------------------------------------------------------
    def _hits(
        self, user: str, scored: list[tuple[str, float]], matched: dict[str, set[int]], query: str | None
    ) -> list[PhotoHit]:
        ids = [i for i, _ in scored]
        photos, regions, paths = self.db.photos(user, ids), self.db.regions_of(user, ids), self.db.paths_of(user, ids)
        words = {name_key(w) for w in WORD.findall(query.lower())} if query else set()
        hits = []
        for photo_id, score in scored:
            p, rows = photos[photo_id], regions.get(photo_id, [])
            found = [_region(r) for r in rows]
            wanted = matched.get(photo_id, set())
            by_text = {r["id"] for r in rows if r["name_key"] and set(r["name_key"].split()) & words}
            copies = paths.get(photo_id, [])
            hits.append(
                PhotoHit(
                    id=photo_id,
                    path=copies[0] if copies else "",
                    paths=copies,
                    taken_at=datetime.fromisoformat(p["taken_at"]) if p["taken_at"] else None,
                    place=Place(lat=p["lat"], lon=p["lon"]) if p["lat"] is not None else None,
                    people=sorted({r["name"] for r in rows if r["name"] and r["category"] == "person"}),
                    regions=found,
                    score=round(score, 4),
                    matched_regions=[n for n, r in enumerate(rows) if r["id"] in wanted or r["id"] in by_text],
                    context=p["context"],
                    size=(p["width"], p["height"]),
                )
            )
        return hits


def _region(row: Any) -> Region:
    return Region(
        box=(row["x1"], row["y1"], row["x2"], row["y2"]),
        category=row["category"],
        score=row["score"],
        source=row["source"],
        info=row["name"],
    )


def _bound(value: date | datetime | None, *, is_end: bool) -> str | None:
    """An ISO bound comparable with stored EXIF times (naive local time): a date covers its whole day."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=None)
    elif isinstance(value, date):
        moment = datetime.combine(value, time.max if is_end else time.min)
    else:
        raise InvalidInputError(f"{value!r} is not a date", "give a date or a datetime, e.g. 2024-05-01")
    return moment.isoformat()


def _closest_name(key: str, names: Sequence[str], cutoff: float = 0.7) -> str | None:
    """The known name most like `key` (a whole name, or as many of its words as `key` has, so "Lesly"
    finds Rose Leslie), when alike enough to be a misspelling; difflib's ratio, best first."""
    size = len(key.split())
    best: tuple[float, str] | None = None
    for name in names:
        words = name_key(name).split()
        grams = {" ".join(words)} | {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
        score = max(difflib.SequenceMatcher(None, key, gram).ratio() for gram in grams)
        if score >= cutoff and (best is None or score > best[0]):
            best = (score, name)
    return best[1] if best else None


def _has_name(key: str, names: Sequence[str]) -> bool:
    """The library's rule for who a name means: the full name or any run of its words ("Rose",
    "Leslie"), never a near miss ("Rose Lesley" is not Rose Leslie)."""
    return any(f" {key} " in f" {name_key(name)} " for name in names)
