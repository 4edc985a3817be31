"""Errors a user can act on.

Every error carries the problem and the fix, so the CLI can print one line and exit non-zero and a
LangChain tool can hand the same line to a model that then corrects its call.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "EmbeddingMismatchError",
    "InvalidInputError",
    "MemoryLockedError",
    "ModelLoadError",
    "NotFoundError",
    "RcmuError",
    "first_line",
]


class RcmuError(Exception):
    """Base class: `problem` says what was wrong, `fix` how to put it right."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem.strip()
        self.fix = fix.strip()
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.problem} — {self.fix}" if self.fix else self.problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Crosses process boundaries (index workers) with problem and fix kept apart."""
        return type(self), (self.problem, self.fix)


class InvalidInputError(RcmuError, ValueError):
    """A photo, box, mask, name, question or user id that cannot be used as given."""


class NotFoundError(RcmuError, LookupError):
    """A user, entity or file that does not exist."""


class ModelLoadError(RcmuError):
    """A model, adapter or processor that could not be loaded (missing, offline, wrong class)."""


class BackendError(RcmuError):
    """The vision-language backend failed at answer time (server down, bad key, timeout)."""


class MemoryLockedError(RcmuError):
    """Another process holds the memory's write lock."""


class EmbeddingMismatchError(RcmuError):
    """A memory collection was built with another embedding model than the one configured."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message: library errors can run to pages."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
