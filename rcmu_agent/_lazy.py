"""`built_once`: a part built on first use, once, even when two threads ask at the same moment.

Async callers run graph nodes in worker threads, so two questions can touch a part first together;
unguarded, both loaded the model (or opened two Chroma clients, which failed). Like
`functools.cached_property`, the value lives in the instance `__dict__`, so a test can put a part
there before first use. The owner provides `_build_lock` (an `RLock`: a part may build another).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

__all__ = ["built_once"]

T = TypeVar("T")


class built_once(Generic[T]):
    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> built_once[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> T | built_once[T]:
        if obj is None:
            return self
        values = obj.__dict__
        if self.name not in values:
            with obj._build_lock:  # type: ignore[attr-defined]
                if self.name not in values:
                    values[self.name] = self.build(obj)
        value: T = values[self.name]
        return value
