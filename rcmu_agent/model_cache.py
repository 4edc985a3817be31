"""The one process-wide cache of loaded model weights, keyed by (class, model id, options).

`Parts` builds each part once per container; the weights under those parts (a detector's network,
the dlib models, MiniLM, the vision-language backend) are what every container in the process
shares, through this cache. One cache means one `clear()` for tests or a server freeing memory.

Loads through the cache run one at a time: transformers sets the process-wide default dtype while
it loads, and dlib models are not safe to touch from two threads, so two loads overlapping could
corrupt each other. (The in-process VLM is cached as its backend object, which loads its weights on
first use under its own lock.) A thread asking for a model another thread is loading waits for it
and gets the same object; a lookup of a model already loaded never waits on a load. A load that
raises stores nothing, so the next caller tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, TypeVar

__all__ = ["ModelCache", "ModelKey", "clear", "get_or_load", "keys", "peek"]

T = TypeVar("T")


class ModelKey(NamedTuple):
    """What makes two loads the same: the class using the weights, their id or directory, and every
    option that changes what gets loaded (device, dtype, ...)."""

    kind: type
    model: str
    options: tuple[Hashable, ...] = ()


class ModelCache:
    """A thread-safe map from `ModelKey` to loaded weights; see the module docstring for the locking."""

    def __init__(self) -> None:
        self._models: dict[ModelKey, Any] = {}
        self._lock = threading.Lock()  # guards `_models`; held only for dict operations
        self._loading = threading.RLock()  # one load at a time; re-entrant for a load that needs another model

    def get_or_load(self, key: ModelKey, load: Callable[[], T]) -> T:
        """The cached value for `key`, calling `load()` (once, whichever threads ask) if there is none."""
        with self._lock:
            if key in self._models:
                return self._models[key]
        with self._loading:
            with self._lock:
                if key in self._models:  # loaded by the thread we waited for
                    return self._models[key]
            value = load()
            with self._lock:
                self._models[key] = value
            return value

    def peek(self, key: ModelKey) -> Any | None:
        """The cached value, or None without loading (a cheap `check()` skips its work when loaded)."""
        with self._lock:
            return self._models.get(key)

    def keys(self, kind: type | None = None) -> list[ModelKey]:
        """Keys of the loaded models, in load order; only those of `kind` when given."""
        with self._lock:
            return [key for key in self._models if kind is None or key.kind is kind]

    def clear(self) -> None:
        """Forget every loaded model; the next use loads it again."""
        with self._lock:
            self._models.clear()


_models = ModelCache()


def get_or_load(kind: type, model: str, options: tuple[Hashable, ...], load: Callable[[], T]) -> T:
    """The process-wide cache's value for (kind, model, options), loaded by `load()` the first time."""
    return _models.get_or_load(ModelKey(kind, model, options), load)


def peek(kind: type, model: str, options: tuple[Hashable, ...] = ()) -> Any | None:
    """The process-wide cache's value for the key, or None; never loads."""
    return _models.peek(ModelKey(kind, model, options))


def keys(kind: type | None = None) -> list[ModelKey]:
    """Keys loaded in the process-wide cache (of `kind` when given)."""
    return _models.keys(kind)


def clear() -> None:
    """Forget every model loaded in this process (tests, or a server freeing memory)."""
    _models.clear()
