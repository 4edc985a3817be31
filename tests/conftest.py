"""Shared fixtures: the small photos in tests/data (unit tests), the real photos in ../shared/data
(integration tests only) and an isolated RCMU_HOME per test; every test is marked either `unit` (pure and
fast) or `integration` (processes, servers, models, or over ~1 s).

Where shared/data is missing, the tests that need it are skipped with the reason, unless
RCMU_REQUIRE_SHARED_DATA is set (as `.ci/run` does): then each of them fails."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration")
SHARED_DATA = Path(os.environ.get("RCMU_SHARED_DATA", REPO.parent / "shared" / "data"))
SMALL_PHOTOS = TESTS / "data"
SHARED_FIXTURES = {"shared_data", "faces_dir"}  # what unit tests may not use, directly or through a fixture
# The longest test files (1-6 min each on the 2-core machine, measured 2026-12-02), longest first. Under
# `pytest -n` (`--dist loadfile --no-loadscope-reorder`) workers take whole files in collection order, so these
# start first and no worker is left running one at the end; the other files follow, the larger ones first.
# A stale list costs wall time only, never a result.
LONG_FILES = (
    "tests/security/test_crash.py",
    "tests/train/test_rcvit.py",
    "tests/tools/test_web.py",
    "tests/tools/test_web_page.py",
    "tests/test_teach_server.py",
    "tests/test_replicas.py",
    "tests/test_agent_chat_ui.py",
    "tests/tools/test_mcp_callers.py",
    "tests/memory/test_memory_durability.py",
    "tests/security/test_soak.py",
    "tests/test_thread_growth.py",
    "tests/test_deploy.py",
    "tests/library/test_library_shared.py",
    "tests/test_transfer.py",
    "tests/evals/test_tiny_run.py",
    "tests/security/test_import_paths.py",
    "tests/memory/test_memory.py",
    "tests/security/test_door.py",
    "tests/test_examples.py",
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything, so no unmarked test slips through
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`pytest -m unit` and `pytest -m integration` together must run the whole suite, exactly once; a unit
    test needs nothing outside the repository; an xdist worker lists the longest files first."""
    wrong, outside = [], []
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        kinds = sorted({mark.name for mark in item.iter_markers() if mark.name in KINDS})
        if len(kinds) != 1:
            wrong.append(f"  {item.nodeid}: {' and '.join(kinds) or 'no unit or integration mark'}")
        elif kinds == ["unit"] and (uses := SHARED_FIXTURES.intersection(getattr(item, "fixturenames", ()))):
            outside.append(f"  {item.nodeid}: {', '.join(sorted(uses))}")
    if wrong:
        raise pytest.UsageError(
            f"{len(wrong)} test(s) need exactly one of the marks unit, integration — put "
            "`pytestmark = pytest.mark.unit` (pure and fast) or `pytest.mark.integration` (processes, servers, "
            "models, or over ~1 s) in the module, or mark each test where a module mixes the two:\n" + "\n".join(wrong)
        )
    if outside:
        raise pytest.UsageError(
            f"{len(outside)} unit test(s) use the shared photos outside the repository — use `small_photos` "
            "(tests/data) or a generated image, or mark the test integration:\n" + "\n".join(outside)
        )
    if hasattr(config, "workerinput"):  # the order the controller hands whole files out in (and only there)
        files = Counter(item.nodeid.split("::", 1)[0] for item in items)
        rank = {name: i for i, name in enumerate(LONG_FILES)}
        first_seen = {name: i for i, name in enumerate(files)}

        def order(name: str) -> tuple[int, int, int]:
            return (rank.get(name, len(LONG_FILES)), -files[name], first_seen[name])

        position = {name: i for i, name in enumerate(sorted(files, key=order))}
        items.sort(key=lambda item: position[item.nodeid.split("::", 1)[0]])  # stable: tests keep their order


@pytest.fixture(scope="session")
def small_photos() -> Path:
    """tests/data: small copies of a few shared photos, checked in (see its README): all a unit test may read."""
    return SMALL_PHOTOS


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full-size photos in shared/data, for integration tests: skipped with the reason where they are
    missing, failed instead when RCMU_REQUIRE_SHARED_DATA is set (CI has them and runs every test)."""
    if not (SHARED_DATA / "faces" / "reference").is_dir():
        reason = (
            f"the shared test photos are not at {SHARED_DATA} — put the shared/ folder beside the repository "
            "or set RCMU_SHARED_DATA to its data folder"
        )
        if os.environ.get("RCMU_REQUIRE_SHARED_DATA", "") not in ("", "0"):
            pytest.fail(f"{reason} (RCMU_REQUIRE_SHARED_DATA is set: no test may be skipped for it)", pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(scope="session")
def faces_dir(shared_data: Path) -> Path:
    return shared_data / "faces"


@pytest.fixture()
def rcmu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "rcmu-home"
    monkeypatch.setenv("RCMU_HOME", str(home))
    yield home


@contextmanager
def running_chroma(folder: Path) -> Iterator[str]:
    """A real Chroma server (the `chroma` command chromadb installs) on a free loopback port, its data and
    log in `folder`; for fixtures of any scope (a module's replicas share one)."""
    cli = Path(sys.executable).with_name("chroma")
    assert cli.exists(), f"chromadb installs the chroma CLI next to {sys.executable}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = (folder / "chroma.log").open("w")
    server = subprocess.Popen(
        [str(cli), "run", "--path", str(folder / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (folder / "chroma.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Chroma server did not answer within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        log.close()


@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A real Chroma server (the `chroma` command chromadb installs) on a free loopback port."""
    with running_chroma(tmp_path) as url:
        yield url


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; tests on CI do run as root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server from the machine's binaries (`.ci/run` installs them), one per test
    process; the URL of its `postgres` database. Tests take a database of their own (`postgres_url`)."""
    import shutil
    import tempfile

    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    assert binaries, "PostgreSQL server binaries are missing: apt-get install postgresql (as .ci/run does)"
    bindir = binaries[-1].parent
    data = Path(tempfile.mkdtemp(prefix="rcmu-pg-"))  # under /tmp: the postgres user can reach it
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"]
    server = subprocess.Popen(
        _as_postgres([str(bindir / "postgres"), "-D", str(data / "db"), "-p", str(port), "-k", str(data), *options]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the test process's PostgreSQL server: what a deployment's
    `RCMU_DATABASE_URL` (and LangGraph Server's `POSTGRES_URI`) would name."""
    return new_database(postgres_server)


def new_database(server_url: str) -> str:
    """A fresh, empty database on the PostgreSQL server at `server_url`: its URL (fixtures of any scope)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture()
def shared_services(postgres_url: str, chroma_server: str) -> dict[str, str]:
    """The shared deployment's environment: one PostgreSQL database and one Chroma server. Replicas
    started with it (and different, empty RCMU_HOMEs) keep nothing that matters on local disk."""
    return {"RCMU_DATABASE_URL": postgres_url, "RCMU_CHROMA_URL": chroma_server}


@pytest.fixture(params=["embedded", "shared"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """A test's storage mode as its processes' environment: {} (`embedded`: everything under RCMU_HOME), or
    `shared_services` (`shared`: a fresh PostgreSQL database and a Chroma server of its own). Parametrize
    it indirectly to pick modes; the crash, soak, hostile and durability tests run in both."""
    return dict(request.getfixturevalue("shared_services")) if request.param == "shared" else {}
