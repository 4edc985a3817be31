"""The parts the agent wires together, each built lazily and once per configuration.

Keeping construction here (not in the graph) lets tests and servers swap a part — a fake backend, a
store on another home — without touching the flow, and keeps `import rcmu_agent` free of torch,
dlib and Chroma. The parts depend on each other only through what they are given here: the
recognizer on the memory, the photo library on the recognizer and the memory; none of them knows
this container.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from threading import RLock
from typing import TYPE_CHECKING

from rcmu_agent._lazy import built_once
from rcmu_agent.images import PhotoCache
from rcmu_agent.settings import Settings
from rcmu_agent.vault import PhotoVault

if TYPE_CHECKING:
    from rcmu_agent.backends import VisionLanguageModel
    from rcmu_agent.memory import MemoryStore
    from rcmu_agent.memory.library import PhotoLibrary
    from rcmu_agent.recognizer import Recognizer

__all__ = ["Parts"]


@dataclass
class Parts:
    """Memory, recognition, the photo library and the vision-language model for one configuration."""

    settings: Settings = field(default_factory=Settings)
    _build_lock: RLock = field(default_factory=RLock, repr=False)

    @built_once
    def vault(self) -> PhotoVault:
        """Every user's photos by content: past the door a photo is an id here. In `RCMU_HOME/vault`, or in
        the PostgreSQL database replicas share (`RCMU_DATABASE_URL`)."""
        if self.settings.database_url:
            from rcmu_agent.postgres import PostgresBlobs

            return PhotoVault(PostgresBlobs(self.settings.database_url))
        return PhotoVault.in_folder(self.settings.home / "vault")

    @built_once
    def photos(self) -> PhotoCache:
        """Checked, decoded photos: the route ingests a photo into the vault, detection and the model reuse it."""
        settings = self.settings
        return PhotoCache(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels, vault=self.vault)

    @built_once
    def memory(self) -> MemoryStore:
        from rcmu_agent.memory import MemoryStore

        return MemoryStore.from_settings(self.settings)

    @built_once
    def recognizer(self) -> Recognizer:
        """Detection, description and matching against the memory: every pipeline's one path."""
        from rcmu_agent.recognizer import Recognizer

        return Recognizer(self.settings, self.memory)

    @built_once
    def library(self) -> PhotoLibrary:
        """The photo-library index; the assistant and the graph's library route share its caches."""
        from rcmu_agent.memory.library import PhotoLibrary

        return PhotoLibrary.open(self.recognizer, self.photos)

    @built_once
    def vlm(self) -> VisionLanguageModel:
        from rcmu_agent.backends import load_backend

        return load_backend(self.settings)
