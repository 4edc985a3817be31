"""Fixtures for the evaluation tests: loopback judge and model servers, settings for the openai backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _helpers, without making tests a package

from _helpers import SAMPLES, judge_responder

from rcmu_agent.settings import Settings
from rcmu_agent.testing import FakeServer, serve

NO_OBJECTS = {"object_detector": None, "image_embedding_model": None}


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="module")
def judge_server() -> Iterator[FakeServer]:
    with serve(FakeServer(responder=judge_responder)) as server:
        yield server


def openai_settings(home: Path, url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "backend": "openai",
        "model": "rc-under-test",
        "base_url": url,
        "max_retries": 0,
        "request_timeout": 20,
        **NO_OBJECTS,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]
