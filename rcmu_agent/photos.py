"""Turning whatever a host agent hands a tool into a photo the assistant can open.

Models pass paths or base64; host code passes bytes or LangChain image content blocks. All of them end
here as the photo's bytes (`Inbound`), or as a `PhotoRef` to a photo already in the user's vault (an
image block `{"type": "image", "id": "photo:…"}`, or the id as text), and every refusal (a remote
URL, a provider file id, text that is neither a path nor base64) says what to send instead. Nothing
is fetched from the network: a tool that downloads whatever URL a model writes would be a
server-side request forgery waiting to happen.
Whether the bytes really are an image is left to `rcmu_agent.images.load_image`, the one decoder.

Paths are the dangerous form: a model may write any path. Each one is read once, through a
`PhotoAccess` (`rcmu_agent._photo_access`) and the door behind it: the folders the user allowed
(`RCMU_ALLOWED_ROOTS`, none by default), minus the rcmu home. Refusals never say whether something
outside the allowed folders exists. A `PhotoRef` is only a name here: the vault of the run's user
decides whether it exists.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from rcmu_agent._photo_access import PhotoAccess
from rcmu_agent.door import Inbound
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.vault import is_photo_id

__all__ = ["ANY_FILE", "FORMS", "NO_PATHS", "Inbound", "PhotoAccess", "PhotoRef", "PhotoSource", "to_photo"]


@dataclass(frozen=True)
class PhotoRef:
    """A photo already in the vault, by id: resolved against the run's user's vault only."""

    id: str


PhotoSource = Inbound | PhotoRef
FORMS = (
    "a local file path, a file:// URL, base64 image data (optionally as a data:image/...;base64, URL), "
    "or a LangChain image content block"
)
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_MIN_BASE64 = 32  # shorter strings are names or typos, not photos (the smallest PNG is ~90 characters)


NO_PATHS = PhotoAccess()
ANY_FILE = PhotoAccess(roots=(Path("/"),))  # the machine's own user (CLI, Python): any regular file


def to_photo(value: Any, access: PhotoAccess = NO_PATHS) -> PhotoSource:
    """The photo's bytes (or a vault reference), or an error naming the form that was not understood.

    A path is read only when `access` allows it (by default none is: inline images only)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _inline(bytes(value))
    if isinstance(value, os.PathLike):
        return access.read(Path(os.fspath(value)))
    if isinstance(value, dict):
        return _from_block(value, access)
    if isinstance(value, str):
        return _from_text(value, access)
    raise InvalidInputError(f"photo of type {type(value).__name__} is not understood", f"send the photo as {FORMS}")


def _from_text(text: str, access: PhotoAccess) -> PhotoSource:
    text = text.strip()
    if not text:
        raise InvalidInputError("photo is empty", f"send the photo as {FORMS}")
    if is_photo_id(text):
        return PhotoRef(text)
    scheme = _SCHEME.match(text)
    if scheme and len(scheme.group(1)) > 1:  # one letter is a Windows drive (C:\...), not a scheme
        return _from_url(text, scheme.group(1).lower(), access)
    compact = "".join(text.split())
    # base64 never holds '.', so "IMG_0001.jpg" or "../x" is a path; text naming a place inside an
    # allowed folder is a path too (a typo there is a missing file, not data)
    if len(compact) < _MIN_BASE64 or not _BASE64.match(compact) or access.holds(text):
        return access.read(text)
    return _inline(_decode_base64(compact))


def _from_url(url: str, scheme: str, access: PhotoAccess) -> PhotoSource:
    if scheme == "data":
        return _inline(_from_data_url(url))
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInputError(
                f"file URL {url[:80]!r} names another host ({parts.netloc})", "copy the photo to this machine"
            )
        return access.read(url2pathname(unquote(parts.path)))
    if scheme in ("http", "https", "ftp", "ftps", "s3", "gs"):
        raise InvalidInputError(
            f"photo {url[:80]!r} is a remote URL; the tools never download",
            "download it yourself and pass the local path, or pass the image as base64",
        )
    raise InvalidInputError(f"photo URL scheme {scheme!r} is not supported", f"send the photo as {FORMS}")


def _from_data_url(url: str) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma:
        raise InvalidInputError("photo data URL has no ',' before its data", "use data:image/png;base64,<data>")
    meta = header.removeprefix("data:").split(";")
    mime = meta[0].strip().lower()
    if mime and not mime.startswith("image/"):
        raise InvalidInputError(f"photo data URL holds {mime}, not an image", "send an image/png or image/jpeg")
    if "base64" not in (m.strip().lower() for m in meta[1:]):
        raise InvalidInputError("photo data URL is not base64-encoded", "use data:image/png;base64,<data>")
    return _decode_base64("".join(payload.split()))


def _inline(data: bytes) -> Inbound:
    if not data:
        raise InvalidInputError("photo is empty (0 bytes)", f"send the photo as {FORMS}")
    return Inbound(data, name="the sent image")


def _decode_base64(text: str) -> bytes:
    """Standard or URL-safe alphabet, padding optional: models drop trailing '=' more often than not."""
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(
            f"photo looks like base64 but does not decode ({exc})", "send the complete base64 string of the image"
        ) from None
    if not data:
        raise InvalidInputError("photo base64 decodes to nothing", "send the complete base64 string of the image")
    return data


def _from_block(block: dict[str, Any], access: PhotoAccess) -> PhotoSource:
    """LangChain content blocks: v1 (`base64` / `url` / `file_id` keys), v0 (`source_type`), OpenAI
    `image_url`, and Anthropic-style `source`. The mime type, when present, must be an image."""
    kind = block.get("type")
    if kind == "image_url":
        inner = block.get("image_url")
        url = inner.get("url") if isinstance(inner, dict) else inner
        if not isinstance(url, str):
            raise InvalidInputError(
                "image_url block has no url", "use {'type': 'image_url', 'image_url': {'url': ...}}"
            )
        return _from_text(url, access)
    if kind not in ("image", "file"):
        raise InvalidInputError(f"content block of type {kind!r} is not an image", f"send the photo as {FORMS}")
    if is_photo_id(block.get("id")):  # a photo this thread already holds (what a checkpoint keeps)
        return PhotoRef(str(block["id"]))
    mime = str(block.get("mime_type") or block.get("mimeType") or block.get("media_type") or "")
    if mime and not mime.lower().startswith("image/"):
        raise InvalidInputError(f"content block holds {mime}, not an image", "send an image block (image/png, ...)")
    source_type = block.get("source_type")
    if isinstance(block.get("source"), dict):  # Anthropic: {"source": {"type": "base64", "data": ...}}
        return _from_block(
            {"type": kind, **{("source_type" if k == "type" else k): v for k, v in block["source"].items()}}, access
        )
    if "base64" in block or source_type == "base64" or (source_type is None and "data" in block):
        # v1 `base64`, v0 `source_type: base64` + `data`, and Agent Chat UI's `data` + `mimeType`
        data = block.get("base64") if "base64" in block else block.get("data")
        if not isinstance(data, str):
            raise InvalidInputError("image block has no base64 data", "put the base64 string under 'base64'")
        return _inline(_from_data_url(data) if data.startswith("data:") else _decode_base64("".join(data.split())))
    if "url" in block or source_type == "url":
        url = block.get("url")
        if not isinstance(url, str):
            raise InvalidInputError("image block has no url", "put the URL under 'url'")
        return _from_text(url, access)
    if "file_id" in block or source_type == "id" or "path" in block:
        if isinstance(block.get("path"), str):
            return access.read(block["path"])
        raise InvalidInputError(
            "image block refers to a provider file id, which only that provider can read",
            "send the image as base64 or a local path",
        )
    raise InvalidInputError("image block has no data", "give 'base64' data or a local 'url' in the block")
