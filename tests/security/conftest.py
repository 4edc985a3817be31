"""A stranger-facing setup: two users on one home, tools allowed one folder that also holds the home
(the tools must still refuse what lies under it), a loopback model server, and a secret file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import FakeServer, Reply, serve

# Distinctive, so any leaked piece of it is found: outputs and logs may not hold even 5 characters of it.
SECRET = "SECRET_API_KEY=sk-live-Qz8vW3xK9mPq7Lr2"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with serve(FakeServer(responder=lambda request: Reply(text="Someone [1] is here."))) as state:
        yield state


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the tools may not read, with a secret in it."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.txt").write_text(SECRET + "\n")
    (folder / "secret.ppm").write_text("P6\n" + SECRET + "\n")
    return folder


@pytest.fixture(scope="module")
def assistant(allowed: Path, server: FakeServer, faces_dir: Path) -> Assistant:
    settings = Settings(
        home=allowed / "rcmu-home",
        backend="openai",
        base_url=server.url,
        model="rc-qwen2-vl",
        api_key=SecretStr("sk-test"),
        object_detector=None,
        image_embedding_model=None,
        allowed_roots=[allowed],
    )
    assistant = Assistant(settings)
    ref = faces_dir / "reference"
    assistant.remember("Barack Obama", info="alice's friend Barack", photos=[ref / "obama_obama.jpg"], user="alice")
    assistant.remember("Joe Biden", info="bob's uncle Joe", photos=[ref / "biden_biden.jpg"], user="bob")
    return assistant
