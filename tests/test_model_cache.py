"""The one model cache: a key loads once however many threads ask, options tell entries apart, clear() forgets."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rcmu_agent import model_cache
from rcmu_agent.model_cache import ModelCache, ModelKey

pytestmark = pytest.mark.unit


class _Weights:
    """Stands for a loaded network: a fresh object per load, so identity tells loads apart."""


class _Detector:
    pass


def test_same_key_loads_once_even_from_two_threads() -> None:
    cache = ModelCache()
    calls: list[int] = []
    both_asking = threading.Barrier(2)

    def load() -> _Weights:
        calls.append(1)
        time.sleep(0.2)  # the second thread arrives while this load is under way
        return _Weights()

    def ask() -> _Weights:
        both_asking.wait()
        return cache.get_or_load(ModelKey(_Detector, "owlv2", ("cpu",)), load)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: ask(), range(2))
    assert calls == [1]
    assert first is second
    assert cache.get_or_load(ModelKey(_Detector, "owlv2", ("cpu",)), load) is first
    assert calls == [1]


def test_different_class_id_or_options_are_different_entries() -> None:
    cache = ModelCache()
    keys = [
        ModelKey(_Detector, "owlv2", ("cpu",)),
        ModelKey(_Detector, "owlv2", ("cuda",)),
        ModelKey(_Detector, "grounding-dino", ("cpu",)),
        ModelKey(_Weights, "owlv2", ("cpu",)),
    ]
    loaded = [cache.get_or_load(key, _Weights) for key in keys]
    assert len({id(weights) for weights in loaded}) == 4
    assert cache.keys() == keys
    assert cache.keys(_Detector) == keys[:3]
    assert [cache.peek(key) for key in keys] == loaded


def test_peek_never_loads_and_clear_forgets() -> None:
    cache = ModelCache()
    key = ModelKey(_Detector, "owlv2", ("cpu",))
    assert cache.peek(key) is None and cache.keys() == []
    first = cache.get_or_load(key, _Weights)
    cache.clear()
    assert cache.peek(key) is None and cache.keys() == []
    again = cache.get_or_load(key, _Weights)
    assert again is not first and cache.peek(key) is again


def test_a_failed_load_stores_nothing_and_the_next_call_retries() -> None:
    cache = ModelCache()
    key = ModelKey(_Detector, "broken", ())

    def fail() -> _Weights:
        raise OSError("weights missing")

    with pytest.raises(OSError, match="weights missing"):
        cache.get_or_load(key, fail)
    assert cache.keys() == []
    assert isinstance(cache.get_or_load(key, _Weights), _Weights)


def test_a_loaded_model_is_served_while_another_loads() -> None:
    cache = ModelCache()
    ready = cache.get_or_load(ModelKey(_Detector, "ready", ()), _Weights)
    started, release = threading.Event(), threading.Event()

    def slow() -> _Weights:
        started.set()
        release.wait(10)
        return _Weights()

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(cache.get_or_load, ModelKey(_Detector, "slow", ()), slow)
        assert started.wait(10)
        assert cache.get_or_load(ModelKey(_Detector, "ready", ()), _Weights) is ready  # no wait on `slow`
        release.set()
        assert isinstance(pending.result(10), _Weights)


def test_the_process_wide_cache_is_shared_by_module_functions() -> None:
    first = model_cache.get_or_load(_Detector, "shared-test-id", ("cpu",), _Weights)
    assert model_cache.get_or_load(_Detector, "shared-test-id", ("cpu",), _Weights) is first
    assert model_cache.peek(_Detector, "shared-test-id", ("cpu",)) is first
    assert model_cache.keys(_Detector) == [ModelKey(_Detector, "shared-test-id", ("cpu",))]
