"""The hostile-path matrix of the tools' security suite, through the graph's message interface as a
server runs it: each path or `file://` URL as an image block is refused with the tools' words before
anything reaches the model, and no piece of the secret file appears in the error or the logs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from rcmu_agent import Settings
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.graph import build_graph
from rcmu_agent.parts import Parts
from rcmu_agent.testing import Reply, serve
from tests.security.conftest import allowed, outside  # noqa: F401  (fixtures, shared with that suite)
from tests.security.test_hostile import _hostile_paths, assert_no_secret

pytestmark = pytest.mark.integration  # the graph over a loopback server, real files, FIFOs and symlinks


def _block(photo: Any) -> dict[str, Any]:
    """A path or file URL as the image block a chat client would send; blocks as they are."""
    return photo if isinstance(photo, dict) else {"type": "image", "url": os.fspath(photo)}


def test_the_graph_refuses_every_hostile_image_path(
    tmp_path: Path,
    allowed: Path,  # noqa: F811
    outside: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    replies: list[str] = []
    with serve() as server:
        server.default = Reply(text="Someone [1] is here.")
        settings = Settings(
            home=tmp_path / "home",
            user="bob",
            backend="openai",
            base_url=server.url,
            model="m",
            object_detector=None,
            image_embedding_model=None,
            allowed_roots=[allowed],
        )
        graph = build_graph(Parts(settings))
        with caplog.at_level(logging.DEBUG):
            for label, (photo, refusal) in _hostile_paths(outside, allowed).items():
                turn = HumanMessage(content=[{"type": "text", "text": "Who is this?"}, _block(photo)])
                with pytest.raises(InvalidInputError) as raised:
                    graph.invoke({"messages": [turn]})
                assert refusal in str(raised.value) and "\n" not in str(raised.value), (label, str(raised.value))
                replies.append(str(raised.value))
        assert not server.requests  # nothing was sent to the model
    assert_no_secret(*replies, *(r.getMessage() for r in caplog.records))
