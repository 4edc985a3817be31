"""Personal memory (`rcmu_agent.memory`): entities, reference photos and recognition, in Chroma;
and the photo library indexed against it (`rcmu index`, `rcmu search`).

Embedded under `RCMU_HOME` by default; a Chroma server when `RCMU_CHROMA_URL` is set.
"""

from rcmu_agent.memory._library_models import (
    Cluster,
    IndexReport,
    LibraryAnswer,
    PhotoCitation,
    PhotoHit,
    Place,
    SkippedFile,
)
from rcmu_agent.memory.store import Match, MemoryStore, ReferencePhoto, Teaching
from rcmu_agent.memory.text_embedder import TEXT_EMBEDDING_MODEL, TextEmbedder

__all__ = [
    "TEXT_EMBEDDING_MODEL",
    "Cluster",
    "IndexReport",
    "LibraryAnswer",
    "Match",
    "MemoryStore",
    "PhotoCitation",
    "PhotoHit",
    "Place",
    "ReferencePhoto",
    "SkippedFile",
    "Teaching",
    "TextEmbedder",
]
