"""Decoding photos safely: one place that turns bytes, local paths or PIL images into a checked RGB image.

Everything downstream (boxes, the 0..999 grid, face detection) assumes the image as displayed, so
EXIF orientation is applied here, once. Only photo formats are decoded (`PHOTO_FORMATS`): PostScript,
EPS and PDF would run Ghostscript on a stranger's bytes, and the many rare formats Pillow knows are
attack surface no photo needs. Decoding has a time limit. Model-facing entry points read a path
through `rcmu_agent.door` first; past that, photos are ids in the user's `PhotoVault`, which
`PhotoCache` decodes once.
"""

from __future__ import annotations

import base64
import contextlib
import io
import stat
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from rcmu_agent.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from rcmu_agent.door import Inbound
    from rcmu_agent.vault import PhotoVault

__all__ = [
    "PHOTO_FORMATS",
    "PHOTO_SUFFIXES",
    "ImageSource",
    "PhotoCache",
    "image_to_data_url",
    "load_image",
    "open_image",
    "register_openers",
]

ImageSource = str | Path | bytes | Image.Image

# Every file type a photo may arrive as: what `rcmu index` lists and what the decoder opens.
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
# Files whose extra frames are not an animation: the first (primary) image is the photo itself
# (HEIF depth maps and bursts, MPO's second eye or depth image).
_PRIMARY_IMAGE_FORMATS = frozenset({"HEIF", "HEIC", "MPO"})
# The only decoders Pillow may run (its names for them); MPO (two-eye and depth JPEGs) opens through JPEG.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
_KNOWN = "give a JPEG, PNG, WebP, HEIC or AVIF file"
DECODE_SECONDS = 60.0  # a 12 MP JPEG decodes in ~0.3 s; 80 MP in a few seconds
_registered = threading.Lock()
_REGISTERED: list[bool] = []


def register_openers() -> None:
    """Teach Pillow HEIC/HEIF (iPhone photos) through pillow-heif; AVIF is built into Pillow ≥ 11.2."""
    with _registered:
        if _REGISTERED:
            return
        try:
            from pillow_heif import register_heif_opener
        except ImportError:  # pragma: no cover - a core dependency, absent only in a broken install
            pass
        else:
            register_heif_opener()
        _REGISTERED.append(True)


def open_image(source: io.BytesIO | Path | str) -> Image.Image:
    """`Image.open` limited to the photo decoders: anything else is `UnidentifiedImageError`."""
    register_openers()
    return Image.open(source, formats=PHOTO_FORMATS)


def load_image(
    source: ImageSource,
    *,
    max_bytes: int = 50 << 20,
    max_pixels: int = 80_000_000,
    name: str | None = None,
    timeout: float = DECODE_SECONDS,
) -> Image.Image:
    """Open, fully decode and check a photo; return it as 8-bit RGB, upright.

    Corrupt, truncated, non-image, animated, oversized and too-slow inputs raise `InvalidInputError`
    naming the file (or `name`) and the limit, before anything is written anywhere. Messages never
    quote the file's bytes.
    """
    if isinstance(source, Image.Image):
        name, img = name or "image", source
        _check_pixels(name, img.size, max_pixels)
        img.load()
    else:
        shown, data = _read_bytes(source, max_bytes)
        img = _decode_in_time(name or shown, data, max_pixels, timeout)
    with contextlib.suppress(Exception):  # a malformed EXIF orientation block: the pixels are fine as stored
        img = ImageOps.exif_transpose(img) or img
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB that looks like the photo: 16-bit and float greys are rescaled, not clipped to white;
    transparency is laid on white rather than on whatever colour the hidden pixels hold."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        import numpy as np

        values = np.asarray(img, dtype=np.float64)
        high = float(values.max(initial=0))
        top = 65535.0 if img.mode.startswith("I;16") else 255.0 if 0 <= high <= 255 and img.mode == "I" else 0.0
        if not top and img.mode == "I" and 0 <= high <= 65535:
            top = 65535.0
        if not top:  # wider integers or floats: stretch what is there
            low = float(values.min(initial=0))
            values, top = values - low, (high - low) or 1.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def _read_bytes(source: str | Path | bytes, max_bytes: int) -> tuple[str, bytes]:
    if isinstance(source, bytes):
        if len(source) > max_bytes:
            raise InvalidInputError(
                f"image is {len(source) / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit",
                "resize it, or raise RCMU_MAX_IMAGE_BYTES",
            )
        return "image bytes", source
    path = Path(str(source).removeprefix("file://")).expanduser()
    try:
        info = path.stat()
    except (OSError, ValueError):
        raise NotFoundError(f"photo {path} does not exist", "check the path") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block forever, a device never end
        raise InvalidInputError(f"photo {path} is not a regular file", "give the path of one image file")
    if info.st_size > max_bytes:
        raise InvalidInputError(
            f"{path} is {info.st_size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit",
            "resize it, or raise RCMU_MAX_IMAGE_BYTES",
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidInputError(f"photo {path} cannot be read ({exc.strerror})", "check its permissions") from None
    if len(data) > max_bytes:
        raise InvalidInputError(
            f"{path} is over the {max_bytes / 2**20:.0f} MiB limit", "resize it, or raise RCMU_MAX_IMAGE_BYTES"
        )
    return str(path), data


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidInputError(f"{name} has no pixels ({width}x{height})", "give a real photo")
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit",
            "downscale it, or raise RCMU_MAX_IMAGE_PIXELS",
        )


def _decode_in_time(name: str, data: bytes, max_pixels: int, timeout: float) -> Image.Image:
    """`_decode` in a worker thread, given up after `timeout` seconds: a crafted file that makes a
    decoder crawl costs that thread, not the caller's request."""
    done: list[Image.Image | BaseException] = []

    def work() -> None:
        try:
            done.append(_decode(name, data, max_pixels))
        except BaseException as exc:
            done.append(exc)

    worker = threading.Thread(target=work, name="rcmu-decode", daemon=True)
    worker.start()
    worker.join(timeout)
    if not done:
        raise InvalidInputError(
            f"{name} took over {timeout:.0f} s to decode", "re-export it as an ordinary JPEG or PNG"
        )
    if isinstance(done[0], BaseException):
        raise done[0]
    return done[0]


def _decode(name: str, data: bytes, max_pixels: int) -> Image.Image:
    """Decode with every failure mapped to one fixed sentence: decoder messages can quote the file's
    first bytes (PIL: "Token too long in file header: b'SECRET...'"), so none is ever passed on."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plugin warnings about a damaged file are noise in a log
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_image(io.BytesIO(data))
            _check_pixels(name, img.size, max_pixels)  # before decoding: a bomb never gets allocated
            _check_frames(name, img)
            img.load()
    except InvalidInputError:
        raise
    except UnidentifiedImageError:
        raise InvalidInputError(f"{name} is not an image rcmu can read", _KNOWN) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInputError(f"{name} is too large to decode safely", "downscale it") from None
    except Exception:  # OSError, SyntaxError, ValueError, struct.error, ... from any plugin
        raise InvalidInputError(f"{name} is corrupt or truncated", "re-export or re-download the photo") from None
    return img


def _check_frames(name: str, img: Image.Image) -> None:
    """An animation has no single photo to answer about: refuse it rather than silently use frame 1."""
    frames = getattr(img, "n_frames", 1)
    if isinstance(frames, int) and frames > 1 and (img.format or "") not in _PRIMARY_IMAGE_FORMATS:
        raise InvalidInputError(
            f"{name} has {frames} frames (an animation or a multi-page file)",
            "export the frame you mean as a still JPEG or PNG",
        )


def image_to_data_url(img: Image.Image) -> str:
    """PNG data URL: lossless, so a server sees exactly the pixels the local backend would."""
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=1)  # lossless at any level; 1 is the fastest
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class PhotoCache:
    """Decoded photos, each decoded once while it stays among the last few used.

    A question decodes its photo at the door, again for detection, for the model and for the
    annotated copy; a 12 MP JPEG costs ~0.3 s to decode. Two kinds of photo: ids in a user's
    `PhotoVault` (everything a question is about: `ingest`, then `image`), and files of the local
    photo library by path (`load`, keyed by path, mtime and size, so an edited file is decoded afresh).
    """

    def __init__(self, *, max_bytes: int, max_pixels: int, vault: PhotoVault | None = None, keep: int = 4) -> None:
        self.max_bytes, self.max_pixels, self.keep = max_bytes, max_pixels, keep
        self.vault = vault
        self._images: OrderedDict[tuple[str, ...], Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def ingest(self, user: str, photo: Inbound) -> str:
        """Check `photo` decodes as a photo within the limits, keep it in `user`'s vault; its id."""
        img = load_image(photo.data, max_bytes=self.max_bytes, max_pixels=self.max_pixels, name=photo.name)
        pid = self._vault().put(user, photo.data)
        self._keep(("vault", user, pid), img)
        return pid

    def image(self, user: str, pid: object) -> Image.Image:
        """The photo `pid` of `user`'s vault, decoded; "no such photo" for anything else."""
        key = ("vault", user, str(pid))
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        data = self._vault().get(user, pid)
        img = load_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels, name="stored photo")
        self._keep(key, img)
        return img

    def load(self, path: str | Path) -> Image.Image:
        """A local file (the photo library, the CLI's own user), decoded; not for paths a stranger gave."""
        if not Path(path).is_file():
            raise NotFoundError(f"photo {path} does not exist", "check the path")
        stat = Path(path).stat()
        key = ("file", str(path), str(stat.st_mtime_ns), str(stat.st_size))
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        img = load_image(str(path), max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        self._keep(key, img)
        return img

    def _keep(self, key: tuple[str, ...], img: Image.Image) -> None:
        with self._lock:
            self._images[key] = img
            while len(self._images) > self.keep:
                self._images.popitem(last=False)

    def _vault(self) -> PhotoVault:
        if self.vault is None:
            raise RuntimeError("this PhotoCache has no vault: build it with PhotoCache(vault=...) or via Parts")
        return self.vault

    def clear(self) -> None:
        """Forget every decoded photo (a benchmark timing the decode, a server giving memory back)."""
        with self._lock:
            self._images.clear()
