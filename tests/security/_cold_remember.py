"""The soak test's cold writer: `python _cold_remember.py HOLDS ARG...` runs `rcmu ARG...` in this new
interpreter (nothing loaded yet) and appends, for each hold of the memory's write lock, how long it
waited for the lock and how long it held it to HOLDS as one JSON line."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import rcmu_agent.memory.store as store  # light: its heavy imports happen inside the functions that need them

real_lock = store.write_lock


@contextlib.contextmanager
def timed_lock(home: Path, timeout: float, database_url: str | None = None) -> Iterator[None]:
    asked = time.monotonic()
    with real_lock(home, timeout, database_url):
        got = time.monotonic()
        try:
            yield
        finally:
            hold = {"waited": round(got - asked, 3), "held": round(time.monotonic() - got, 3)}
            with open(sys.argv[1], "a") as out:
                out.write(json.dumps(hold) + "\n")


store.write_lock = timed_lock  # type: ignore[assignment]

if __name__ == "__main__":
    from rcmu_agent.cli import app

    app(sys.argv[2:], prog_name="rcmu")
