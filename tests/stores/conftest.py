"""Fixtures for the store tests: every backend behind one ``store`` fixture.

Redis and PostgreSQL run on the real servers of the test run (``tests/conftest.py``);
each test gets a namespace of its own there (a key prefix, a schema), removed after.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sessionlocker.stores import FaultyStore, MemoryStore, SQLiteStore, Store, open_store
from sessionlocker.stores.url import supported_forms


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
    #: Remove what the test left on a shared server (after the store is closed).
    cleanup: Callable[[], None] = field(default=lambda: None)


def _sleep_a_bit_more(seconds: float) -> None:
    time.sleep(seconds + 0.02)


def _with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


def redis_backend(url: str, opener: Callable[[str], Store] = open_store) -> Backend:
    """A store under a fresh key prefix on the run's Redis server (``opener`` opens it)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    store = opener(_with_option(url, f"prefix={prefix}"))

    def cleanup() -> None:
        import redis  # noqa: PLC0415 (only the Redis tests need it)

        with redis.Redis.from_url(url) as client:
            names = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if names:
                client.delete(*names)

    return Backend("redis", store, 0.2, _sleep_a_bit_more, cleanup)


def postgres_backend(url: str, opener: Callable[[str], Store] = open_store) -> Backend:
    """A store in a fresh schema on the run's PostgreSQL server (``opener`` opens it)."""
    if not any(form.startswith("postgresql://") for form in supported_forms()):
        pytest.skip("postgresql store not written yet")
    import psycopg  # noqa: PLC0415 (only the PostgreSQL tests need it)

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    store = opener(_with_option(url, f"schema={schema}"))

    def cleanup() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")

    return Backend("postgresql", store, 0.2, _sleep_a_bit_more, cleanup)


def make_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    if name == "redis":
        return redis_backend(request.getfixturevalue("redis_url"))
    if name == "postgresql":
        return postgres_backend(request.getfixturevalue("postgres_url"))
    if name in ("memory", "faulty-memory"):
        clock = FakeClock()
        inner: Store = MemoryStore(clock=clock)
        ttl, pass_time = 10.0, clock.advance
    else:
        inner = SQLiteStore(tmp_path / "store.db")
        ttl, pass_time = 0.2, _sleep_a_bit_more
    store = FaultyStore(inner, seed=1) if name.startswith("faulty-") else inner
    return Backend(name, store, ttl, pass_time)


BACKENDS = ["memory", "sqlite", "faulty-memory", "faulty-sqlite", "redis", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, tmp_path, request)
    yield made
    made.store.close()
    made.cleanup()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store
