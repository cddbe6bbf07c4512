"""Fixtures for the store tests: every backend behind one ``store`` fixture."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessionlocker.stores import FaultyStore, MemoryStore, SQLiteStore, Store


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """A store under test, and how to make its session clock move forward."""

    name: str
    store: Store
    #: A session ttl suited to this store's clock.
    ttl: float
    #: Let ``seconds`` of the store's session clock pass.
    pass_time: Callable[[float], None]


def _sleep_a_bit_more(seconds: float) -> None:
    time.sleep(seconds + 0.02)


def make_backend(name: str, tmp_path: Path) -> Backend:
    if name in ("memory", "faulty-memory"):
        clock = FakeClock()
        inner: Store = MemoryStore(clock=clock)
        ttl, pass_time = 10.0, clock.advance
    else:
        inner = SQLiteStore(tmp_path / "store.db")
        ttl, pass_time = 0.2, _sleep_a_bit_more
    store = FaultyStore(inner, seed=1) if name.startswith("faulty-") else inner
    return Backend(name, store, ttl, pass_time)


BACKENDS = ["memory", "sqlite", "faulty-memory", "faulty-sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, tmp_path)
    yield made
    made.store.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store
