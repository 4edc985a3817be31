"""Faces, for real: dlib detection feeding dlib's 128-d descriptor, as two small classes.

Detection produces regions; the encoder turns each region into a descriptor that recognition compares
with the references in memory (Euclidean distance, 0.6 cut-off). The `.dat` weights ship in the
`face-recognition-models` package, located without importing it (its `__init__` needs pkg_resources).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rcmu_agent import model_cache
from rcmu_agent.errors import ModelLoadError
from rcmu_agent.regions import check_box
from rcmu_agent.schema import Region

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.settings import Settings

__all__ = ["FACE_DESCRIPTOR_MODEL", "LARGE_SIDE", "FaceDetector", "FaceEncoder", "model_file"]

FACE_DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1"
# dlib's detectors find faces from ~80 px; each upsampling halves that at 4x the work. Once a photo's
# short side reaches this, an 80-px face is under 4% of it and a 12 MP photo costs 4.6 s at
# upsample 1 against 1.0 s at 0 with the same faces: upsampling stops here.
LARGE_SIDE = 2000
# dlib's models by role, named as face-recognition-models' `.dat` files (HOG is built in code, no file).
_DLIB_MODELS = {
    "hog": "frontal_face_detector",
    "cnn": "mmod_human_face_detector",
    "shape5": "shape_predictor_5_face_landmarks",
    "resnet": FACE_DESCRIPTOR_MODEL,
}
# dlib's detectors, aligner and ResNet are not safe to call from two threads at once (concurrent calls
# returned hundreds of bogus faces, then corrupted the heap). Async callers run detection in worker
# threads, so every call into a dlib model holds this lock.
_calls = threading.Lock()


def model_file(name: str) -> Path:
    """Path of one of the `.dat` files shipped by face-recognition-models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the face models are not installed", "pip install face-recognition-models (see README)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ModelLoadError(f"face model file {path} is missing", "reinstall face-recognition-models")
    return path


def _dlib_models(kind: str) -> Any:
    """One of dlib's models ("hog", "cnn", "shape5", "resnet"), loaded once per process into the model cache."""
    owner = FaceDetector if kind in ("hog", "cnn") else FaceEncoder
    return model_cache.get_or_load(owner, _DLIB_MODELS[kind], (), lambda: _load_dlib(kind))


def _load_dlib(kind: str) -> Any:
    import dlib

    if kind == "hog":
        return dlib.get_frontal_face_detector()
    load = {
        "cnn": dlib.cnn_face_detection_model_v1,
        "shape5": dlib.shape_predictor,
        "resnet": dlib.face_recognition_model_v1,
    }[kind]
    return load(str(model_file(f"{_DLIB_MODELS[kind]}.dat")))


def _rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError("expected an RGB uint8 image")
    return np.ascontiguousarray(array)


def _cuda_dlib() -> bool:
    import dlib

    return bool(getattr(dlib, "DLIB_USE_CUDA", False)) and dlib.cuda.get_num_devices() > 0


class FaceDetector:
    """dlib face detection: HOG (fast, frontal) on CPUs, the CNN (MMOD) detector on a GPU or on request.

    `upsample` is the most upsampling used: small photos get all of it (small faces stay findable),
    large ones less or none (see `LARGE_SIDE`).
    """

    def __init__(self, model: Literal["auto", "hog", "cnn"] = "hog", upsample: int = 1) -> None:
        self.model: Literal["hog", "cnn"] = ("cnn" if _cuda_dlib() else "hog") if model == "auto" else model
        self.upsample = upsample

    def upsample_for(self, width: int, height: int) -> int:
        """Upsampling for a photo this size: double while the short side is under `LARGE_SIDE`."""
        levels, side = 0, min(width, height)
        while levels < self.upsample and side < LARGE_SIDE:
            levels, side = levels + 1, side * 2
        return levels

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceDetector:
        return cls(settings.face_model, settings.face_upsample)

    def detect(self, image: Image.Image | np.ndarray) -> list[Region]:
        """Faces as `person` regions with pixel boxes clamped to the image, largest first."""
        array = _rgb_array(image)
        height, width = array.shape[:2]
        detector = _dlib_models(self.model)
        upsample = self.upsample_for(width, height)
        found: list[tuple[Any, float]] = []
        with _calls:
            if self.model == "cnn":
                found = [(d.rect, float(d.confidence)) for d in detector(array, upsample)]
            else:
                rects, scores, _ = detector.run(array, upsample, 0.0)
                found = list(zip(rects, (float(s) for s in scores), strict=True))
        regions = []
        for rect, score in found:
            box = (float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1))
            try:
                box = check_box(box, (width, height), strict=False)
            except ValueError:
                continue  # a detection entirely off the image
            regions.append(Region(box=box, category="person", score=round(score, 4), source="face"))
        return sorted(regions, key=lambda r: -(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]))


class FaceEncoder:
    """128-d face descriptors: 5-point alignment, then dlib's ResNet."""

    model_name = FACE_DESCRIPTOR_MODEL
    dim = 128

    def __init__(self, jitters: int = 1) -> None:
        self.jitters = jitters

    def encode(self, image: Image.Image | np.ndarray, regions: list[Region]) -> list[Region]:
        """The same regions with `descriptor` filled in."""
        if not regions:
            return []
        import dlib

        array = _rgb_array(image)
        aligner, resnet = _dlib_models("shape5"), _dlib_models("resnet")
        with _calls:
            shapes = dlib.full_object_detections()
            for region in regions:
                x1, y1, x2, y2 = (round(v) for v in region.box)
                shapes.append(aligner(array, dlib.rectangle(x1, y1, x2 - 1, y2 - 1)))
            descriptors = resnet.compute_face_descriptor(array, shapes, self.jitters)
        return [
            region.model_copy(update={"descriptor": [float(v) for v in descriptor]})
            for region, descriptor in zip(regions, descriptors, strict=True)
        ]
