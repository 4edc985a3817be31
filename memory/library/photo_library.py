"""The photo library: every user's indexed photos under one home, for search and for questions.

Composed of single-purpose parts over one shared store, each usable on its own:

- `indexer` — `rcmu index DIR`: incremental, resumable, pixel work in worker processes;
- `search` — people together, text, dates; and the photos a question is about;
- `clusters` — faces nobody has named yet: list, name (which teaches the memory), merge, split;
- `names` — keeps recognised names in step with the personal memory.

Recognition is the agent's own `Recognizer`, so a face found by the index and by a question about the
same photo is the same entity at the same distance.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcmu_agent.images import PhotoCache
from rcmu_agent.memory.library._clusters import FaceClusters
from rcmu_agent.memory.library._index import LibraryIndexer
from rcmu_agent.memory.library._names import LibraryNames
from rcmu_agent.memory.library._search import LibrarySearch
from rcmu_agent.memory.library._store import LibraryStore
from rcmu_agent.recognizer import Recognizer

__all__ = ["FaceClusters", "LibraryIndexer", "LibraryNames", "LibrarySearch", "LibraryStore", "PhotoLibrary"]


@dataclass(frozen=True)
class PhotoLibrary:
    """The library's parts for one home; build it with `PhotoLibrary.open`."""

    store: LibraryStore
    names: LibraryNames
    indexer: LibraryIndexer
    search: LibrarySearch
    clusters: FaceClusters

    @classmethod
    def open(cls, recognizer: Recognizer, photos: PhotoCache) -> PhotoLibrary:
        """The library under `recognizer.settings.home`, recognising against `recognizer.memory`."""
        memory = recognizer.memory
        if memory is None:
            raise ValueError("the photo library needs a recognizer with a memory")
        store = LibraryStore(recognizer.settings)
        names = LibraryNames(store, recognizer)
        return cls(
            store=store,
            names=names,
            indexer=LibraryIndexer(store, recognizer, names),
            search=LibrarySearch(store, names, memory),
            clusters=FaceClusters(store, names, memory, photos),
        )
