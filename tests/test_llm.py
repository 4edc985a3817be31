"""The helper LLM: cache, concurrency limit, token accounting and format checks, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM
from rcmu_agent.errors import BackendError, InvalidInputError
from rcmu_agent.llm import LLM, LLMFormatError, Prompt, load_prompt, parse_json
from rcmu_agent.settings import Settings
from rcmu_agent.testing import Reply, serve


def make_llm(url: str, tmp_path: Path, **kwargs: object) -> LLM:
    backend = OpenAICompatibleVLM(model="judge", base_url=url, api_key=None, max_retries=1, retry_wait_max=0.01)
    return LLM(backend, cache=tmp_path / "cache.sqlite", **kwargs)  # type: ignore[arg-type]


@pytest.mark.integration
def test_cache_makes_a_rerun_free(tmp_path: Path) -> None:
    with serve() as server:
        server.default = Reply(text='{"score": 4}')
        llm = make_llm(server.url, tmp_path)
        assert asyncio.run(llm.json("rate this")) == {"score": 4}
        assert llm.stats.calls == 1 and llm.stats.prompt_tokens == 10 and llm.stats.completion_tokens == 7
        again = make_llm(server.url, tmp_path)  # a new process would open the same file
        assert asyncio.run(again.json("rate this")) == {"score": 4}
        assert again.stats.calls == 0 and again.stats.cached == 1
        assert len(server.requests) == 1
        asyncio.run(again.json("rate that"))  # another prompt is another key
        assert len(server.requests) == 2


@pytest.mark.integration
def test_off_format_reply_is_asked_again_and_never_cached(tmp_path: Path) -> None:
    with serve() as server:
        server.then(Reply(text="Sure! Here you go"), Reply(text='```json\n{"ok": true}\n```'))
        llm = make_llm(server.url, tmp_path)
        assert asyncio.run(llm.json("q")) == {"ok": True}
        assert llm.stats.off_format == 1 and llm.stats.calls == 2


@pytest.mark.integration
def test_persistent_off_format_is_a_reported_failure(tmp_path: Path) -> None:
    with serve() as server:
        server.default = Reply(text="no json here")
        llm = make_llm(server.url, tmp_path, format_attempts=2)
        with pytest.raises(LLMFormatError, match="off-format 2 times"):
            asyncio.run(llm.json("q"))
        assert llm.stats.failures == 1
        server.default = Reply(text="[1, 2]")
        assert asyncio.run(llm.json("q")) == [1, 2]  # the failure was not cached


@pytest.mark.integration
def test_check_rejects_wrong_shape(tmp_path: Path) -> None:
    def needs_score(value: object) -> int:
        if not isinstance(value, dict) or "score" not in value:
            raise ValueError("no score")
        return int(value["score"])

    with serve() as server:
        server.then(Reply(text='{"other": 1}'), Reply(text='{"score": "3"}'))
        assert asyncio.run(make_llm(server.url, tmp_path).json("q", needs_score)) == 3


@pytest.mark.integration
def test_server_errors_surface_as_backend_errors(tmp_path: Path) -> None:
    with serve() as server:
        server.default = Reply(status=500, body={"message": "boom"})
        llm = make_llm(server.url, tmp_path)
        with pytest.raises(BackendError, match="HTTP 500"):
            asyncio.run(llm.text("q"))
        assert llm.stats.failures == 1


@pytest.mark.integration
def test_concurrency_limit_is_respected(tmp_path: Path) -> None:
    with serve() as server:
        server.default = Reply(text="ok", delay=0.05)
        llm = make_llm(server.url, tmp_path, concurrency=3)

        async def run() -> list[str]:
            return await asyncio.gather(*(llm.text(f"q{i}") for i in range(12)))

        assert asyncio.run(run()) == ["ok"] * 12
    assert server.peak_in_flight == 3


@pytest.mark.unit
def test_parse_json_tolerates_preamble() -> None:
    assert parse_json('Here: {"a": [1]} done') == {"a": [1]}
    assert parse_json("[1, 2]") == [1, 2]
    with pytest.raises(ValueError, match="not JSON"):
        parse_json("nothing")


@pytest.mark.unit
def test_prompt_files_are_versioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "promptpkg"
    (package / "prompts").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "prompts" / "rate.txt").write_text('version: 3\nRate $thing as {"score": N}.\n')
    (package / "prompts" / "bad.txt").write_text("Rate $thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    prompt = load_prompt("promptpkg", "rate")
    assert prompt == Prompt("rate", 3, 'Rate $thing as {"score": N}.')
    assert prompt.render(thing="it") == '[rate v3]\nRate it as {"score": N}.'
    with pytest.raises(InvalidInputError, match="needs field 'thing'"):
        prompt.render()
    with pytest.raises(InvalidInputError, match="version: N"):
        load_prompt("promptpkg", "bad")


@pytest.mark.integration
def test_from_settings_uses_agent_key_and_own_model(tmp_path: Path) -> None:
    with serve() as server:
        llm = LLM.from_settings(Settings(home=tmp_path, base_url=server.url), model="judge-model")
        asyncio.run(llm.text("hello"))
        assert server.requests[0].body["model"] == "judge-model"
        assert json.dumps(server.requests[0].body["messages"][0]["content"][-1]["text"]) == '"hello"'


@pytest.mark.unit
def test_concurrency_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        make_llm("http://127.0.0.1:9/v1", tmp_path, concurrency=0)
