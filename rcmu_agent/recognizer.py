"""Who and what is where in a photo: detect → describe → match, the one recognition path.

Answering a question (the graph's detect and recall nodes), indexing the photo library, teaching
someone (`remember`) and importing a knowledge base all call this class, so a face found by
`rcmu index` and by `rcmu ask` in the same photo is the same entity at the same distance.

The work splits where the pixels end. `see` (and `describe_reference`, `embed_photo`) needs only the
photo and the pixel models, so the indexer and the importer run it in worker processes; `match`
needs only descriptors and the personal memory, so it runs where the memory is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from threading import RLock
from typing import TYPE_CHECKING, Any, Protocol

from rcmu_agent._lazy import built_once
from rcmu_agent.errors import InvalidInputError, ModelLoadError
from rcmu_agent.regions import check_box
from rcmu_agent.schema import ContextEntry, Region
from rcmu_agent.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.faces import FaceDetector, FaceEncoder
    from rcmu_agent.memory.image_embedder import ImageEmbedder
    from rcmu_agent.memory.store import MemoryStore
    from rcmu_agent.objects import ObjectDetector

__all__ = ["Recognizer", "Reference", "Seen"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """What recognition keeps of a reference photo: a face descriptor (people) or an image embedding
    (anything else; None when no image model is configured), and how many faces the photo held."""

    face_descriptor: list[float] | None = None
    image_embedding: list[float] | None = None
    faces: int = 0


class Seen(Protocol):
    """What a worker process saw in a photo (the indexer's `Pixels` is one): its size and its faces,
    described."""

    width: int
    height: int
    faces: list[Region]


class Recognizer:
    """The pixel models and the memory they are matched against, for one configuration.

    `memory` may be None where only pixels are needed (worker processes); `match` then refuses.
    """

    def __init__(self, settings: Settings, memory: MemoryStore | None = None) -> None:
        self.settings = settings
        self.memory = memory
        self._build_lock = RLock()
        self._expected: dict[tuple[str, int, int], Future[Any]] = {}

    # ---- the pixel models, built on first use ----------------------------------------------------
    @built_once
    def face_detector(self) -> FaceDetector:
        from rcmu_agent.faces import FaceDetector

        return FaceDetector.from_settings(self.settings)

    @built_once
    def face_encoder(self) -> FaceEncoder:
        from rcmu_agent.faces import FaceEncoder

        return FaceEncoder()

    @built_once
    def object_detector(self) -> ObjectDetector | None:
        """None when turned off, or when it cannot load (offline, say): faces still work, with a warning."""
        if not self.settings.object_detector:
            return None
        from rcmu_agent.objects import ObjectDetector

        return _optional("object detection (pets and things taught by photo)", ObjectDetector.from_settings, self)

    @built_once
    def image_embedder(self) -> ImageEmbedder | None:
        """None when turned off or unloadable, like the detector: objects are then not recognised."""
        if not self.settings.image_embedding_model:
            return None
        from rcmu_agent.memory.image_embedder import ImageEmbedder

        return _optional("object recognition and photo search by look", ImageEmbedder.from_settings, self)

    # ---- detect + describe (pixels only) ---------------------------------------------------------
    def see(
        self,
        image: Image.Image,
        categories: Sequence[str] = (),
        *,
        given: Sequence[Region] | None = None,
        source: str | Path | None = None,
    ) -> list[Region]:
        """The photo's regions with what recognition compares attached (face descriptors for people,
        image embeddings for objects).

        Without `given`: faces are detected (or taken from a worker that was `expect`ed to find them
        in the file `source`), and objects of `categories` (the non-person kinds the user taught).
        With `given` (a caller's boxes, in the caller's order, which `<regionK>` refers to): the boxes
        are checked strictly and described as they are.
        """
        if given:
            regions = [r.model_copy(update={"box": check_box(r.box, image.size, strict=True)}) for r in given]
            return self._describe(image, regions, given=True)
        ready = self._take_expected(source, image.size)
        regions = self.face_detector.detect(image) if ready is None else []
        kinds = [c for c in categories if c != "person"]
        if kinds and self.object_detector is not None:
            regions += self.object_detector.detect(image, kinds)
        return (ready or []) + self._describe(image, regions, given=False)

    def expect(self, path: str | Path, seen: Future[Any]) -> None:
        """The faces of the photo file at `path` are being found by another process; `seen` resolves to
        a `Seen`. `see(..., source=path)` then takes them instead of detecting again.

        A cold `rcmu ask` spends about a second importing LangGraph and Chroma on one core; a worker
        started first spends it on dlib on the other. The file's size and mtime are part of the key,
        so an edited file is seen afresh, and a worker that failed is simply not used: `see` detects
        here and reports the error as usual.
        """
        key = _file_key(path)
        if key is not None:
            self._expected[key] = seen

    def _take_expected(self, source: str | Path | None, size: tuple[int, int]) -> list[Region] | None:
        if not self._expected or source is None or (key := _file_key(source)) is None:
            return None
        future = self._expected.pop(key, None)
        if future is None:
            return None
        try:
            seen: Seen = future.result()
        except Exception as exc:
            log.debug("faces seen ahead not used: %s", exc)
            return None
        return list(seen.faces) if (seen.width, seen.height) == tuple(size) else None

    def _describe(self, image: Image.Image, regions: list[Region], *, given: bool) -> list[Region]:
        """A caller's person box may hold a whole body, so its face is found by detection inside it
        rather than by aligning landmarks on the box itself. Regions with caller info skip recognition."""
        out = list(regions)
        people = [i for i, r in enumerate(out) if r.info is None and r.category == "person"]
        if people:
            if given:
                found = self.face_detector.detect(image)
                pairs = [(i, _face_inside(out[i], found)) for i in people]
            else:
                pairs = [(i, out[i]) for i in people]
            faces = [(i, face) for i, face in pairs if face is not None]
            encoded = self.face_encoder.encode(image, [face for _, face in faces])
            for (i, _), face in zip(faces, encoded, strict=True):
                out[i] = out[i].model_copy(update={"descriptor": face.descriptor})
        objects = [i for i, r in enumerate(out) if r.info is None and r.category != "person"]
        embedder = self.image_embedder if objects else None
        if embedder is not None:
            crops = [embedder.crop(image, out[i].box) for i in objects]
            for i, vector in zip(objects, embedder.embed(crops), strict=True):
                out[i] = out[i].model_copy(update={"descriptor": vector.tolist()})
        return out

    def embed_photo(self, image: Image.Image) -> list[float] | None:
        """The whole photo's image embedding (photo search by look), or None without an image model."""
        embedder = self.image_embedder
        return embedder.embed([image])[0].tolist() if embedder is not None else None

    def describe_reference(self, image: Image.Image, category: str, label: str = "the photo") -> Reference:
        """A reference photo as recognition will compare it: the largest face for a person (an error
        when there is none), else the photo's image embedding."""
        if category != "person":
            return Reference(image_embedding=self.embed_photo(image))
        faces = self.face_detector.detect(image)
        if not faces:
            raise InvalidInputError(
                f"no face found in {label}",
                "use a photo where the face is visible, frontal and at least ~80 pixels wide",
            )
        face = self.face_encoder.encode(image, faces[:1])[0]
        return Reference(face_descriptor=face.descriptor, faces=len(faces))

    # ---- match (memory only) ---------------------------------------------------------------------
    def object_categories(self, user: str) -> list[str]:
        """The non-person kinds `user` taught: what the object detector is asked to find."""
        return [c for c in self._memory().categories(user) if c != "person"]

    def match(self, user: str, regions: Sequence[Region]) -> list[ContextEntry]:
        """One context entry per region, in order: the entity recognised there (nearest reference
        under the threshold, one region per entity) with its distance, else the region alone.
        Entries carry no descriptors: they go into prompts, states and answers."""
        memory, settings = self._memory(), self.settings
        entries = [ContextEntry(region=r.model_copy(update={"descriptor": None}), info=r.info) for r in regions]
        faces = [i for i, r in enumerate(regions) if r.info is None and r.category == "person" and r.descriptor]
        objects = [i for i, r in enumerate(regions) if r.info is None and r.category != "person" and r.descriptor]
        matches = memory.match_faces(user, [regions[i].descriptor or [] for i in faces], settings.face_threshold)
        matches += memory.match_objects(
            user,
            [regions[i].descriptor or [] for i in objects],
            [regions[i].category for i in objects],
            settings.object_threshold,
        )
        for i, found in zip(faces + objects, matches, strict=True):
            if found is not None:
                e = found.entity
                entries[i] = entries[i].model_copy(
                    update={"entity_id": e.id, "name": e.name, "info": e.info, "distance": found.distance}
                )
        return entries

    def _memory(self) -> MemoryStore:
        if self.memory is None:
            raise RuntimeError("this recognizer has no memory to match against (a pixel-only worker)")
        return self.memory


def _optional(what: str, build: Callable[[Settings], Any], owner: Recognizer) -> Any:
    """An optional model, checked to load (cheaply, its config); if it cannot, one warning line saying
    what is skipped and how to enable it, and None: the face path never depends on it."""
    try:
        part = build(owner.settings)
        if part is not None:
            part.check()
        return part
    except ModelLoadError as exc:
        log.warning("%s skipped: %s", what, exc)
        return None


def _file_key(path: str | Path) -> tuple[str, int, int] | None:
    try:
        resolved = Path(path).resolve()
        stat = resolved.stat()
    except (OSError, ValueError):
        return None
    return str(resolved), stat.st_mtime_ns, stat.st_size


def _face_inside(box_region: Region, faces: list[Region]) -> Region | None:
    """The largest detected face whose centre lies inside the caller's box."""
    x1, y1, x2, y2 = box_region.box
    inside = [f for f in faces if x1 <= (f.box[0] + f.box[2]) / 2 <= x2 and y1 <= (f.box[1] + f.box[3]) / 2 <= y2]
    return max(inside, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)
