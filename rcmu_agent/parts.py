"""The parts the agent wires together, each built lazily and once.

Keeping construction here (not in the graph) lets tests and servers swap a part — a fake backend, a
store on another home — without touching the flow, and keeps `import rcmu_agent` free of torch,
dlib and Chroma.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING

from rcmu_agent.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.backends import VisionLanguageModel
    from rcmu_agent.faces import FaceDetector, FaceEncoder
    from rcmu_agent.memory import MemoryStore
    from rcmu_agent.memory.image_embedder import ImageEmbedder
    from rcmu_agent.objects import ObjectDetector

__all__ = ["Parts"]


@dataclass
class Parts:
    """Detection, recognition, memory and the vision-language model for one configuration."""

    settings: Settings = field(default_factory=Settings)
    _images: OrderedDict[tuple[str, int, int], Image.Image] = field(default_factory=OrderedDict, repr=False)
    _images_lock: Lock = field(default_factory=Lock, repr=False)

    @cached_property
    def memory(self) -> MemoryStore:
        from rcmu_agent.memory import MemoryStore

        return MemoryStore.from_settings(self.settings)

    @cached_property
    def face_detector(self) -> FaceDetector:
        from rcmu_agent.faces import FaceDetector

        return FaceDetector.from_settings(self.settings)

    @cached_property
    def face_encoder(self) -> FaceEncoder:
        from rcmu_agent.faces import FaceEncoder

        return FaceEncoder()

    @cached_property
    def object_detector(self) -> ObjectDetector | None:
        if not self.settings.object_detector:
            return None
        from rcmu_agent.objects import ObjectDetector

        return ObjectDetector.from_settings(self.settings)

    @cached_property
    def image_embedder(self) -> ImageEmbedder | None:
        if not self.settings.image_embedding_model:
            return None
        from rcmu_agent.memory.image_embedder import ImageEmbedder

        return ImageEmbedder.from_settings(self.settings)

    @cached_property
    def vlm(self) -> VisionLanguageModel:
        from rcmu_agent.backends import load_backend

        return load_backend(self.settings)

    def image(self, path: str) -> Image.Image:
        """A checked photo, decoded once per process while it stays among the last few used."""
        from rcmu_agent.errors import NotFoundError
        from rcmu_agent.images import load_image

        if not Path(path).is_file():
            raise NotFoundError(f"photo {path} does not exist", "check the path")
        stat = Path(path).stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._images_lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        img = load_image(path, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels)
        with self._images_lock:
            self._images[key] = img
            while len(self._images) > 4:
                self._images.popitem(last=False)
        return img
