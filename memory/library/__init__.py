"""The photo library (`rcmu_agent.memory.library`): every user's indexed photos, for search and questions.

`PhotoLibrary` (`photo_library.py`) composes the parts over one `LibraryStore`: the indexer (`_index`,
pixel work in `workers`), search (`_search`), face clusters (`_clusters`, grouped by `_cluster_index`) and
names (`_names`); `_db` is the sidecar (SQLite, or PostgreSQL in `_pg` when replicas share a deployment,
SQL checked by `_sql`; `LibraryDB` is public for `rcmu export --library`), `_walk` lists a folder safely,
`cli` is `rcmu index`, `rcmu search` and the cluster commands.

Exports load lazily: `rcmu` imports `memory.library.cli` for its commands at every start, and `rcmu ask`
starts `workers` before the agent imports; neither should pay for the indexer, the recognizer or Pillow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rcmu_agent.memory.library._clusters import FaceClusters
    from rcmu_agent.memory.library._db import LibraryDB
    from rcmu_agent.memory.library._index import LibraryIndexer
    from rcmu_agent.memory.library._names import LibraryNames
    from rcmu_agent.memory.library._search import LibrarySearch
    from rcmu_agent.memory.library._store import LibraryStore
    from rcmu_agent.memory.library.photo_library import PhotoLibrary

__all__ = [
    "FaceClusters",
    "LibraryDB",
    "LibraryIndexer",
    "LibraryNames",
    "LibrarySearch",
    "LibraryStore",
    "PhotoLibrary",
]

_HOME = {
    "FaceClusters": "_clusters",
    "LibraryDB": "_db",
    "LibraryIndexer": "_index",
    "LibraryNames": "_names",
    "LibrarySearch": "_search",
    "LibraryStore": "_store",
    "PhotoLibrary": "photo_library",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(f"rcmu_agent.memory.library.{_HOME[name]}"), name)
    raise AttributeError(f"module 'rcmu_agent.memory.library' has no attribute {name!r}")
