"""The store conformance suite, run against every async store.

Each test of ``test_conformance`` is collected here too, with a ``backend`` fixture
whose store is an ``AsyncStore`` from ``open_async_store`` seen through
``BlockingStore`` (``_bridges``): every call is the async store's coroutine,
run on one event loop thread. Redis and PostgreSQL are the native async clients, on
the run's real servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, FakeClock, open_backend
from sessionlocker.stores import MemoryStore
from sessionlocker.stores._bridges import BlockingStore, NotifyingThreadedAsyncStore, threaded
from sessionlocker.stores.base import AsyncStore, Notifying, Store
from sessionlocker.stores.opening import open_async_store

from .async_support import LoopThread
from .test_conformance import *  # noqa: F403 (the same tests, collected with this backend)

ASYNC_BACKENDS = [
    "async-memory",
    "async-sqlite",
    "async-redis",
    "async-redis-cluster",
    "async-redis-cluster-replicas",
    "async-postgresql",
    "async-redis-sentinel",
    "async-postgresql-standby",
]


def _make(name: str, tmp_path: Path, loop: LoopThread) -> Backend:
    if name == "async-memory":  # a fake clock, to judge session expiry without waiting
        clock = FakeClock()
        store = loop.store(threaded(MemoryStore(clock=clock)))
        return Backend(name, store, 10.0, clock.advance)

    def opener(url: str) -> Store:
        return loop.store(open_async_store(url))

    return open_backend(name.removeprefix("async-"), tmp_path, opener=opener)


@pytest.fixture(params=ASYNC_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    loop = LoopThread()
    try:
        made = _make(request.param, tmp_path, loop)
        yield made
        made.close()
    finally:
        loop.stop()


def test_is_an_async_store(store: Store, backend: Backend) -> None:
    assert isinstance(store, BlockingStore)
    assert isinstance(store.inner, AsyncStore)
    notifies = "sqlite" not in backend.name  # SQLite is polled
    assert isinstance(store.inner, Notifying) is notifies


def test_open_async_store_memory_is_threaded() -> None:
    assert isinstance(open_async_store("memory://"), NotifyingThreadedAsyncStore)
