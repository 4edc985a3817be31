"""Where an answer's time went, stage by stage, so a user on a CPU sees what the wait is made of.

A step opens a `collect()` scope; inside it, `stage("name")` blocks (and `add`/`note` for values
measured elsewhere, such as the model's own hooks) write into the scope's `Timings`. The scope lives
in a context variable, so code deep in a backend — in a worker thread started with the caller's
context — records into the step that called it without any argument passing; outside a scope the
calls cost nothing and record nothing.

Stage names (seconds unless said otherwise), as `Answer.timings` carries them:

- `decode_s`: photo bytes to pixels (the vault's read, EXIF rotation);
- `detect_s`: finding faces (and objects, when a detector is configured) and recognising them;
- `resize_s`: the model's resize to the visual budget, normalisation and patching;
- `vision_s`: the vision encoder; `prefill_s`: the language model over the whole prompt;
- `first_token_s`: from the model's call to its first token (resize + vision + prefill + one step);
- `decode_tokens`, `tokens_per_s`: tokens generated after the first one, and their rate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Timings", "add", "collect", "current", "describe", "mark", "note", "stage"]


class Timings(dict[str, float]):
    """Stage name → seconds (or a count/rate for names not ending in `_s`); repeated stages add up.

    `marks` holds moments (`time.perf_counter()`) one recorder leaves for another, never reported.
    """

    def __init__(self, *args: object, **kwargs: float) -> None:
        super().__init__(*args, **kwargs)
        self.marks: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self[name] = self.get(name, 0.0) + seconds

    def rounded(self) -> dict[str, float]:
        """For people and JSON: milliseconds are enough."""
        return {k: round(v, 3) for k, v in self.items()}


_current: ContextVar[Timings | None] = ContextVar("rcmu_timings", default=None)


def current() -> Timings | None:
    """The open scope's timings, or None outside any."""
    return _current.get()


@contextmanager
def collect(start: Mapping[str, float] | None = None) -> Iterator[Timings]:
    """A scope whose stages are recorded into the yielded `Timings` (seeded with `start`)."""
    timings = Timings(start or {})
    token = _current.set(timings)
    try:
        yield timings
    finally:
        _current.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as `name` (added to any earlier time under the same name)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - start)


def add(name: str, seconds: float) -> None:
    timings = _current.get()
    if timings is not None:
        timings.add(name, seconds)


def mark(name: str) -> None:
    """Remember this moment under `name` (see `Timings.marks`)."""
    timings = _current.get()
    if timings is not None:
        timings.marks[name] = time.perf_counter()


def note(name: str, value: float) -> None:
    """Set a value that is not a duration to add up (a token count, a rate)."""
    timings = _current.get()
    if timings is not None:
        timings[name] = value


_NAMES = {
    "decode_s": "decode",
    "detect_s": "face detection",
    "resize_s": "resize",
    "vision_s": "vision encoder",
    "prefill_s": "prefill",
    "first_token_s": "model to first token",
}


def describe(timings: Mapping[str, float]) -> str:
    """One line for people: `time: decode 0.21 s · face detection 0.87 s · … · decoding 3.1 tokens/s`."""
    parts = [f"{label} {timings[key]:.2f} s" for key, label in _NAMES.items() if key in timings]
    if timings.get("tokens_per_s"):
        parts.append(f"decoding {timings['tokens_per_s']:.1f} tokens/s ({int(timings.get('decode_tokens', 0))} tokens)")
    return "time: " + " · ".join(parts) if parts else ""
