"""The parts the agent wires together, each built lazily and once.

Keeping construction here (not in the graph) lets tests and servers swap a part — a fake backend, a
store on another home — without touching the flow, and keeps `import rcmu_agent` free of torch,
dlib and Chroma.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock, RLock
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from rcmu_agent.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.backends import VisionLanguageModel
    from rcmu_agent.faces import FaceDetector, FaceEncoder
    from rcmu_agent.memory import MemoryStore
    from rcmu_agent.memory.image_embedder import ImageEmbedder
    from rcmu_agent.memory.library import PhotoLibrary
    from rcmu_agent.objects import ObjectDetector

__all__ = ["Parts"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class _part(Generic[T]):
    """`cached_property` that builds under the owner's lock.

    Async callers run nodes in worker threads, so two questions can touch a part first at the same
    moment; unguarded, both loaded the model (or opened two Chroma clients, which failed). Like
    `cached_property` the value lives in the instance `__dict__`, so a test can put a part there.
    """

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _part[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> T | _part[T]:
        if obj is None:
            return self
        values = obj.__dict__
        if self.name not in values:
            with obj._build_lock:  # type: ignore[attr-defined]
                if self.name not in values:
                    values[self.name] = self.build(obj)
        value: T = values[self.name]
        return value


@dataclass
class Parts:
    """Detection, recognition, memory and the vision-language model for one configuration."""

    settings: Settings = field(default_factory=Settings)
    _images: OrderedDict[tuple[str, int, int], Image.Image] = field(default_factory=OrderedDict, repr=False)
    _images_lock: Lock = field(default_factory=Lock, repr=False)
    _build_lock: RLock = field(default_factory=RLock, repr=False)

    @_part
    def memory(self) -> MemoryStore:
        from rcmu_agent.memory import MemoryStore

        return MemoryStore.from_settings(self.settings)

    @_part
    def face_detector(self) -> FaceDetector:
        from rcmu_agent.faces import FaceDetector

        return FaceDetector.from_settings(self.settings)

    @_part
    def face_encoder(self) -> FaceEncoder:
        from rcmu_agent.faces import FaceEncoder

        return FaceEncoder()

    @_part
    def object_detector(self) -> ObjectDetector | None:
        """None when turned off, or when it cannot load (offline, say): faces still work, with a warning."""
        if not self.settings.object_detector:
            return None
        from rcmu_agent.objects import ObjectDetector

        return _optional("object detection (pets and things taught by photo)", ObjectDetector.from_settings, self)

    @_part
    def image_embedder(self) -> ImageEmbedder | None:
        """None when turned off or unloadable, like the detector: objects are then not recognised."""
        if not self.settings.image_embedding_model:
            return None
        from rcmu_agent.memory.image_embedder import ImageEmbedder

        return _optional("object recognition and photo search by look", ImageEmbedder.from_settings, self)

    @_part
    def library(self) -> PhotoLibrary:
        """The photo-library index; the assistant and the graph's library route share its caches."""
        from rcmu_agent.memory.library import PhotoLibrary

        return PhotoLibrary(self)

    @_part
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


def _optional(what: str, build: Callable[[Settings], Any], parts: Parts) -> Any:
    """An optional part, checked to load (cheaply, its config); if it cannot, one warning line saying
    what is skipped and how to enable it, and None: the face path never depends on it."""
    from rcmu_agent.errors import ModelLoadError

    try:
        part = build(parts.settings)
        if part is not None:
            part.check()
        return part
    except ModelLoadError as exc:
        log.warning("%s skipped: %s", what, exc)
        return None
