"""Shared fixtures: the real photos in ../shared/data and an isolated RCMU_HOME per test; every test is
marked either `unit` (pure and fast) or `integration` (processes, servers, models, or over ~1 s)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration")
SHARED_DATA = Path(os.environ.get("RCMU_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything, so no unmarked test slips through
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`pytest -m unit` and `pytest -m integration` together must run the whole suite, exactly once."""
    wrong = []
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        kinds = sorted({mark.name for mark in item.iter_markers() if mark.name in KINDS})
        if len(kinds) != 1:
            wrong.append(f"  {item.nodeid}: {' and '.join(kinds) or 'no unit or integration mark'}")
    if wrong:
        raise pytest.UsageError(
            f"{len(wrong)} test(s) need exactly one of the marks unit, integration — put "
            "`pytestmark = pytest.mark.unit` (pure and fast) or `pytest.mark.integration` (processes, servers, "
            "models, or over ~1 s) in the module, or mark each test where a module mixes the two:\n" + "\n".join(wrong)
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "faces" / "reference").is_dir():
        raise RuntimeError(f"test photos not found at {SHARED_DATA}; set RCMU_SHARED_DATA to the shared/data folder")
    return SHARED_DATA


@pytest.fixture(scope="session")
def faces_dir(shared_data: Path) -> Path:
    return shared_data / "faces"


@pytest.fixture()
def rcmu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "rcmu-home"
    monkeypatch.setenv("RCMU_HOME", str(home))
    yield home


@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A real Chroma server (the `chroma` command chromadb installs) on a free loopback port."""
    cli = Path(sys.executable).with_name("chroma")
    assert cli.exists(), f"chromadb installs the chroma CLI next to {sys.executable}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = (tmp_path / "chroma.log").open("w")
    server = subprocess.Popen(
        [str(cli), "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "chroma.log").read_text()[-2000:]
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
