"""The store conformance suite, run against every async store.

Each test of ``test_conformance`` is collected here too, with a ``backend`` fixture
whose store is an ``AsyncStore`` from ``open_async_store`` seen through
``BlockingStore`` (``async_blocking``): every call is the async store's coroutine,
run on one event loop thread. Redis and PostgreSQL are the native async clients, on
the run's real servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionlocker.stores import MemoryStore
from sessionlocker.stores.async_base import AsyncStore
from sessionlocker.stores.async_blocking import BlockingStore
from sessionlocker.stores.async_threaded import NotifyingThreadedAsyncStore, threaded
from sessionlocker.stores.base import Notifying, Store
from sessionlocker.stores.opening import open_async_store

from .async_support import LoopThread
from .conftest import Backend, FakeClock, postgres_backend, redis_backend
from .test_conformance import *  # noqa: F403 (the same tests, collected with this backend)

ASYNC_BACKENDS = ["async-memory", "async-sqlite", "async-redis", "async-postgresql"]


def _make(name: str, tmp_path: Path, request: pytest.FixtureRequest, loop: LoopThread) -> Backend:
    def opener(url: str) -> Store:
        return loop.store(open_async_store(url))

    if name == "async-redis":
        return redis_backend(request.getfixturevalue("redis_url"), opener)
    if name == "async-postgresql":
        return postgres_backend(request.getfixturevalue("postgres_url"), opener)
    if name == "async-memory":  # a fake clock, to judge session expiry without waiting
        clock = FakeClock()
        store = loop.store(threaded(MemoryStore(clock=clock)))
        return Backend(name, store, 10.0, clock.advance)
    store = opener(f"sqlite:///{tmp_path / 'store.db'}")
    return Backend(name, store, 0.2, lambda seconds: time.sleep(seconds + 0.02))


@pytest.fixture(params=ASYNC_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    loop = LoopThread()
    try:
        made = _make(request.param, tmp_path, request, loop)
        yield made
        made.store.close()
        made.cleanup()
    finally:
        loop.stop()


def test_is_an_async_store(store: Store, backend: Backend) -> None:
    assert isinstance(store, BlockingStore)
    assert isinstance(store.inner, AsyncStore)
    notifies = "sqlite" not in backend.name  # SQLite is polled
    assert isinstance(store.inner, Notifying) is notifies


def test_open_async_store_memory_is_threaded() -> None:
    assert isinstance(open_async_store("memory://"), NotifyingThreadedAsyncStore)
