"""The real services a shared deployment runs on, for benchmarks: started exactly as the tests start them.

tests/conftest.py owns the one way to start a PostgreSQL server from the machine's binaries, take a fresh
database on it (`new_database`), and run a `chroma run` server on a free loopback port (`running_chroma`);
these call those very functions, so a change there (a setting, a port, a timeout) reaches the benchmarks too.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

__all__ = ["chroma_server", "fresh_database", "postgres_server"]

CONFTEST = Path(__file__).resolve().parents[1] / "tests" / "conftest.py"


def _fixtures() -> ModuleType:
    """tests/conftest.py under a private name (a plain `import conftest` would need tests/ on sys.path)."""
    spec = importlib.util.spec_from_file_location("_rcmu_test_fixtures", CONFTEST)
    assert spec is not None and spec.loader is not None, f"{CONFTEST} is missing"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FIXTURES = _fixtures()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server (initdb + postgres from /usr/lib/postgresql/*/bin); the URL of its
    `postgres` database. Stopped and its folder removed on exit."""
    with contextlib.contextmanager(_FIXTURES.postgres_server.__wrapped__)() as url:  # a session fixture
        yield url


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server: what a deployment's RCMU_DATABASE_URL names."""
    return str(_FIXTURES.new_database(server_url))


@contextlib.contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    """A real `chroma run` server keeping its data (and its log, chroma.log) under `folder`; its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    with _FIXTURES.running_chroma(folder) as url:
        yield url
