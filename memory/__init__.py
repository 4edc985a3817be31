"""Personal memory (`rcmu_agent.memory`): entities, reference photos and recognition, in Chroma;
and the photo library indexed against it (`rcmu_agent.memory.library`: `rcmu index`, `rcmu search`).

Embedded under `RCMU_HOME` by default; a Chroma server when `RCMU_CHROMA_URL` is set. The library's
records (`PhotoHit`, `IndexReport`, …) are in `rcmu_agent.schema`.
"""

from rcmu_agent.memory.store import Match, MemoryStore, ReferencePhoto, Teaching
from rcmu_agent.memory.text_embedder import TEXT_EMBEDDING_MODEL, TextEmbedder

__all__ = ["TEXT_EMBEDDING_MODEL", "Match", "MemoryStore", "ReferencePhoto", "Teaching", "TextEmbedder"]
