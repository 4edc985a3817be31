"""The helper LLM behind data generation (`train/`) and judging (`evals/`): any OpenAI-compatible model.

Both pipelines make thousands of calls that are expensive and must survive a rerun, so every call
goes through here: a disk cache keyed by (model, prompt[, image]) so a rerun pays nothing twice, a
concurrency limit shared by all callers, token accounting, and replies checked for format (JSON)
with a bounded number of re-asks before the failure is reported as such — never silently as a
wrong answer. Transport, retries and error messages are the agent's own OpenAI backend.

Prompts live in versioned files (`prompts/<name>.txt` inside the package that owns them): the first
line is `version: N`, the rest a `string.Template` (`$field`), so JSON examples need no escaping.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rcmu_agent.errors import BackendError, InvalidInputError

if TYPE_CHECKING:
    from PIL import Image

    from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM, TokenUsage
    from rcmu_agent.settings import Settings

__all__ = ["LLM", "LLMFormatError", "LLMStats", "Prompt", "load_prompt", "parse_json"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class LLMFormatError(BackendError):
    """The model kept answering in a shape the caller cannot use (e.g. not the JSON asked for)."""


@dataclass(frozen=True)
class Prompt:
    """One versioned prompt file. The version is part of the text, hence of every cache key."""

    name: str
    version: int
    template: str

    def render(self, **fields: Any) -> str:
        """Fill `$field`s; a missing field is a bug in the caller, so it fails loudly."""
        try:
            body = string.Template(self.template).substitute(fields)
        except KeyError as exc:
            raise InvalidInputError(f"prompt {self.name!r} needs field {exc}", "pass it to render()") from None
        return f"[{self.name} v{self.version}]\n{body}"


def load_prompt(package: str, name: str) -> Prompt:
    """`prompts/<name>.txt` from `package` (e.g. "rcmu_agent.train"), installed as package data."""
    ref = resources.files(package).joinpath("prompts", f"{name}.txt")
    text = ref.read_text(encoding="utf-8")
    head, _, body = text.partition("\n")
    match = re.fullmatch(r"version:\s*(\d+)\s*", head)
    if match is None:
        raise InvalidInputError(f"prompt file {ref} must start with 'version: N'", "add the version line")
    return Prompt(name=name, version=int(match.group(1)), template=body.strip("\n"))


def parse_json(text: str) -> Any:
    """The JSON value in a reply, tolerating the code fences and preambles chat models add."""
    stripped = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", stripped, flags=re.DOTALL)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = max(stripped.rfind("}"), stripped.rfind("]"))
        if end > start:
            try:
                return json.loads(stripped[start : end + 1])
            except json.JSONDecodeError:
                pass
    raise ValueError(f"not JSON: {' '.join(text.split())[:120]!r}")


@dataclass
class LLMStats:
    """What the calls cost; `cached` calls cost nothing. Safe to update from many tasks."""

    calls: int = 0
    cached: int = 0
    off_format: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class _Cache:
    """sqlite, not one file per reply: atomic writes, safe across processes, one file to delete."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT, "
            "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
        )
        self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, model: str, reply: str, usage: TokenUsage) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, reply, usage.prompt, usage.completion, time.time()),
            )
            self._db.commit()

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM replies WHERE key = ?", (key,))
            self._db.commit()


class LLM:
    """A cached, rate-limited text (or image + text) model. Build with `LLM.from_settings`."""

    def __init__(
        self,
        backend: OpenAICompatibleVLM,
        *,
        cache: Path | None = None,
        concurrency: int = 8,
        max_tokens: int = 512,
        format_attempts: int = 3,
    ) -> None:
        if concurrency < 1:
            raise InvalidInputError(f"concurrency must be at least 1, got {concurrency}", "pass 1 or more")
        self.backend = backend
        self.model = backend.model
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.format_attempts = format_attempts
        self.stats = LLMStats()
        self._cache = _Cache(cache) if cache is not None else None
        self._limits: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._limits_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        model: str,
        base_url: str | None = None,
        cache: Path | None = None,
        concurrency: int = 8,
        max_tokens: int = 512,
    ) -> LLM:
        """A helper model beside the agent's: same key, timeout and retry settings, its own model id/URL."""
        from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM

        backend = OpenAICompatibleVLM(
            model=model,
            base_url=base_url or settings.base_url,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
            max_new_tokens=max_tokens,
        )
        return cls(backend, cache=cache, concurrency=concurrency, max_tokens=max_tokens)

    async def text(self, prompt: str, *, image: Image.Image | None = None) -> str:
        return await self.ask(prompt, str.strip, image=image)

    async def json(
        self, prompt: str, check: Callable[[Any], T] | None = None, *, image: Image.Image | None = None
    ) -> T:
        """The reply parsed as JSON and passed through `check` (which raises ValueError to reject it)."""

        def accept(reply: str) -> T:
            value = parse_json(reply)
            return check(value) if check is not None else value

        return await self.ask(prompt, accept, image=image)

    async def ask(self, prompt: str, accept: Callable[[str], T], *, image: Image.Image | None = None) -> T:
        """Ask until `accept` takes the reply (at most `format_attempts` fresh calls).

        Only accepted replies are cached, so a rerun never replays an off-format answer.
        """
        key = self._key(prompt, image)
        if self._cache is not None and (hit := self._cache.get(key)) is not None:
            try:
                value = accept(hit)
            except ValueError:
                self._cache.delete(key)  # written by an older, laxer check
            else:
                self.stats.add(cached=1)
                return value
        problem = ""
        for _ in range(self.format_attempts):
            async with self._limit():
                started = time.perf_counter()
                try:
                    reply, usage = await self.backend.acomplete(prompt, image, max_new_tokens=self.max_tokens)
                except BackendError:
                    self.stats.add(failures=1)
                    raise
                finally:
                    self.stats.add(calls=1, seconds=time.perf_counter() - started)
            self.stats.add(prompt_tokens=usage.prompt, completion_tokens=usage.completion)
            try:
                value = accept(reply)
            except ValueError as exc:
                problem = str(exc)
                self.stats.add(off_format=1)
                log.info("%s answered off-format (%s); asking again", self.model, problem)
                continue
            if self._cache is not None:
                self._cache.put(key, self.model, reply, usage)
            return value
        self.stats.add(failures=1)
        raise LLMFormatError(
            f"model {self.model!r} answered off-format {self.format_attempts} times: {problem}",
            "use a stronger instruction-following model, or check the prompt file",
        )

    def _key(self, prompt: str, image: Image.Image | None) -> str:
        digest = hashlib.sha256()
        digest.update(self.model.encode())
        digest.update(b"\0")
        digest.update(prompt.encode())
        if image is not None:
            digest.update(b"\0image\0")
            digest.update(image.mode.encode() + repr(image.size).encode())
            digest.update(image.tobytes())
        return digest.hexdigest()

    def _limit(self) -> asyncio.Semaphore:
        """One limit per event loop (a semaphore belongs to the loop that first awaits it)."""
        loop = asyncio.get_running_loop()
        with self._limits_lock:
            for stale in [other for other in self._limits if other.is_closed()]:
                del self._limits[stale]
            if loop not in self._limits:
                self._limits[loop] = asyncio.Semaphore(self.concurrency)
            return self._limits[loop]
