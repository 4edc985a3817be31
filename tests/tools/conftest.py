"""Fixtures for the tool tests: one real memory (Chroma on disk, dlib faces) taught once per session,
and a loopback OpenAI-compatible server (real HTTP) that answers from the context it receives.

The server's "model" reads the SPEC §2 text block it was sent and cites every numbered entry, so an
answer names exactly what recognition put in the context; tests also read what it received.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import FakeServer, Recorded, Reply, serve

OBAMA_INFO = "Barack Obama was the 44th president of the United States and loves basketball"
BIDEN_INFO = "Joe Biden was the 46th president and enjoys ice cream"
BELLA_INFO = "Bella is our golden retriever; we adopted her on 2019-06-02 from the Leeds shelter"
KIT_INFO = "Kit Harington is bob's colleague who plays the lute"
NO_MODELS: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}
_ENTRY = re.compile(r"^\[(\d+)\]: The information of the (.+?)(?: located at .+? in the image)?: (.+)\.$")


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> Any:
    """The standard suites' async tests carry no asyncio mark and the project runs pytest-asyncio in
    strict mode; mark coroutine tests here, before pytest-asyncio's wrapper turns them into items."""
    result = yield
    items = result if isinstance(result, list) else [result] if result is not None else []
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.asyncio)
    return result


def echo_model(request: Recorded) -> Reply:
    """A deterministic stand-in for RC-Qwen2-VL: one sentence per context entry, each cited."""
    content = request.body["messages"][-1]["content"]
    text = next(part["text"] for part in content if part["type"] == "text")
    cited = [m for line in text.split("\n") if (m := _ENTRY.match(line))]
    if not cited:
        return Reply(text="Cannot be answered. The information does not say.")
    return Reply(text=" ".join(f"{m.group(3)} [{m.group(1)}]." for m in cited))


@pytest.fixture(scope="session")
def server() -> Iterator[FakeServer]:
    with serve(FakeServer(responder=echo_model)) as state:
        yield state


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """alice knows Obama, Biden (faces) and Bella (no photo); bob knows only Kit Harington."""
    home = tmp_path_factory.mktemp("tools-home")
    teacher = Assistant(Settings(home=home, **NO_MODELS))
    ref = faces_dir / "reference"
    teacher.remember("Barack Obama", info=OBAMA_INFO, photos=[ref / "obama_obama.jpg"], user="alice")
    teacher.remember("Joe Biden", info=BIDEN_INFO, photos=[ref / "biden_biden.jpg"], user="alice")
    teacher.remember("Bella", info=BELLA_INFO, category="dog", user="alice")
    teacher.remember("Kit Harington", info=KIT_INFO, photos=[ref / "kit_harington_john1.jpeg"], user="bob")
    return home


def openai_settings(home: Path, url: str, roots: list[Path] | None = None) -> Settings:
    """`roots`: the folders tools may read photos from; by default the shared photos and pytest's temp
    folders (which hold the home too: the tools must still refuse what lies under it)."""
    if roots is None:
        shared = Path(os.environ.get("RCMU_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
        roots = [shared, home.parent.parent]
    return Settings(
        home=home,
        backend="openai",
        base_url=url,
        model="rc-qwen2-vl",
        api_key=SecretStr("sk-test"),
        allowed_roots=roots,
        **NO_MODELS,
    )


@pytest.fixture(scope="session")
def assistant(home: Path, server: FakeServer) -> Assistant:
    return Assistant(openai_settings(home, server.url))


@pytest.fixture(scope="session")
def scene(faces_dir: Path) -> Path:
    return faces_dir / "scenes" / "two_people.jpg"


@pytest.fixture(scope="session")
def info() -> dict[str, str]:
    """What the session memory holds about each entity (the tests check it reached the model)."""
    return {"Barack Obama": OBAMA_INFO, "Joe Biden": BIDEN_INFO, "Bella": BELLA_INFO, "Kit Harington": KIT_INFO}


@pytest.fixture()
def received(server: FakeServer) -> Callable[[], list[str]]:
    """The text blocks the server received since the test started (tests run one at a time)."""
    start = len(server.requests)

    def texts() -> list[str]:
        return [
            next(p["text"] for p in r.body["messages"][-1]["content"] if p["type"] == "text")
            for r in server.requests[start:]
        ]

    return texts


@pytest.fixture(scope="session")
def library(assistant: Assistant, faces_dir: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice's photo library: the three scene photos and a cat, indexed once (real dlib, Chroma, SQLite)."""
    import shutil

    root = tmp_path_factory.mktemp("library")
    for photo in (faces_dir / "scenes").iterdir():
        shutil.copy(photo, root / photo.name)
    shutil.copy(shared_data / "objects" / "chelsea.png", root / "chelsea.png")
    report = assistant.index_library(root, user="alice")
    assert report.added == 4 and not report.skipped, report
    return root
