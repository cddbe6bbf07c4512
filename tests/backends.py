"""Test stores, one way for every test: ``open_backend(name, folder)`` gives a fresh, empty
store of a backend (memory, SQLite in a folder, or this run's Redis or PostgreSQL server)
as a ``Backend``, whose ``close()`` closes the store and removes what the test left on a
shared server. Also: driving services by hand (``drive``, ``load``).

``tests/conftest.py`` starts the Redis and PostgreSQL servers for tests whose id names
them (``test_x[redis]``, ``test_redis.py``) and puts their URLs in the environment; here a
test reads them, and a backend with no server is skipped with a reason in capitals
(``REDIS BACKEND NOT TESTED: ...``), never silently.

On a server each test gets a namespace of its own: a key prefix on Redis, a schema on
PostgreSQL. ``Backend.url`` opens the same records again (for another process, the
command line, or an async store), namespace included.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sessionlocker import LockerService, Spec, Status
from sessionlocker.core.locker import Locker
from sessionlocker.core.protocol import Versioned
from sessionlocker.stores import MemoryStore, Store, open_store
from sessionlocker.stores.base import Entry

__all__ = [
    "FAST",
    "Backend",
    "FakeClock",
    "drive",
    "fast_spec",
    "load",
    "open_backend",
    "server_url",
    "undated",
]

#: Short times, so leases, autosaves and handoffs play out within a test.
FAST = {"lease": 0.6, "autosave_period": 0.2, "force_timeout": 0.4, "poll_period": 0.02}


def fast_spec(
    namespace: str = "players", create: Callable[[], Any] = lambda: {"log": []}, **overrides: Any
) -> Spec:
    """A ``Spec`` with the ``FAST`` times; ``overrides`` replace them or add settings."""
    return Spec(namespace, create, **{**FAST, **overrides})


_ENV = {
    "redis": "SESSIONLOCKER_REDIS_URL",
    "postgresql": "SESSIONLOCKER_POSTGRES_URL",
    "redis-cluster": "SESSIONLOCKER_REDIS_CLUSTER_URL",
    "redis-sentinel": "SESSIONLOCKER_SENTINEL_URL",
    "postgresql-standby": "SESSIONLOCKER_POSTGRES_STANDBY_URL",
}


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _sleep_a_bit_more(seconds: float) -> None:
    time.sleep(seconds + 0.02)


def _nothing_to_remove() -> None:
    """The cleanup of a store that leaves nothing on a shared server."""


@dataclass
class Backend:
    """A store under test, how to make its session clock move, and how to remove it."""

    name: str
    store: Store
    #: A session ttl suited to this store's clock.
    ttl: float
    #: Let ``seconds`` of the store's session clock pass.
    pass_time: Callable[[float], None]
    #: Remove what the test left on a shared server (after the store is closed).
    cleanup: Callable[[], None] = field(default=_nothing_to_remove)
    #: A URL that opens these same records (``None`` for memory: a URL opens new ones).
    url: str | None = None

    def close(self) -> None:
        """Close the store, then remove its namespace from the server."""
        try:
            self.store.close()
        finally:
            self.cleanup()


def server_url(kind: str) -> str:
    """The URL of this run's ``kind`` server (``redis``, ``redis-cluster``, ``postgresql``
    or ``postgresql-standby``: a primary and a synchronous standby), or a loud skip."""
    url = os.environ.get(_ENV[kind])
    if not url:
        pytest.skip(f"{kind.upper()} BACKEND NOT TESTED: {_ENV[kind]} is not set")
    return url


def _with_options(url: str, *options: str) -> str:
    query = "&".join(option for option in options if option)
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


def open_backend(
    name: str,
    folder: Path,
    *,
    history: int | None = None,
    clock: FakeClock | None = None,
    opener: Callable[[str], Store] = open_store,
) -> Backend:
    """A fresh, empty store of backend ``name``; the caller calls ``close()`` on it.

    ``name`` is ``memory``, ``sqlite`` (a file in ``folder``), ``redis``,
    ``redis-cluster`` (``redis-cluster-replicas``: with ``replicas=1``), ``postgresql``
    or ``postgresql-standby`` (the multi-host URL of a primary and its synchronous
    standby). ``history`` is how many versions a key keeps
    (each backend's own default when ``None``). Memory runs on ``clock`` when one is
    given (its ttl is then 10 s of that clock), else on the real clock. ``opener``
    opens every URL (an async store seen as a blocking one, for instance).
    """
    options = "" if history is None else f"history={history}"
    if name == "memory":
        depth = history or 0  # the memory store's own default: no versions
        if clock is None:
            return Backend(name, MemoryStore(history=depth), 0.2, _sleep_a_bit_more)
        return Backend(name, MemoryStore(clock, history=depth), 10.0, clock.advance)
    if name == "sqlite":
        url = _with_options(f"sqlite:///{folder / 'store.db'}", options)
        return Backend(name, opener(url), 0.2, _sleep_a_bit_more, url=url)
    if name == "redis":
        return _redis(server_url("redis"), options, opener)
    if name == "redis-cluster":
        return _redis_cluster(server_url("redis-cluster"), options, opener)
    if name == "redis-cluster-replicas":  # every record command waits for the slot's replica
        replicas = _with_options("", "replicas=1", options).lstrip("?")
        return _redis_cluster(server_url("redis-cluster"), replicas, opener)
    if name in ("postgresql", "postgresql-standby"):
        return _postgresql(name, server_url(name), options, opener)
    if name == "redis-sentinel":
        return _sentinel(server_url("redis-sentinel"), options, opener)
    raise ValueError(f"no test backend named {name!r}")


def _redis(server: str, options: str, opener: Callable[[str], Store]) -> Backend:
    """A store under a fresh key prefix on the run's Redis server."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    url = _with_options(server, f"prefix={prefix}", options)

    def cleanup() -> None:
        import redis  # noqa: PLC0415 (only the Redis tests need it)

        with redis.Redis.from_url(server) as client:
            names = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if names:
                client.delete(*names)

    return Backend("redis", _opened(url, opener, cleanup), 0.2, _sleep_a_bit_more, cleanup, url)


def _redis_cluster(server: str, options: str, opener: Callable[[str], Store]) -> Backend:
    """A store under a fresh key prefix on the run's Redis Cluster."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    url = _with_options(server, f"prefix={prefix}", options)

    def cleanup() -> None:
        from sessionlocker.stores.redis._cluster import RedisClusterStore  # noqa: PLC0415

        nodes = server.split("//", 1)[1].split("/", 1)[0].split(",")
        store = RedisClusterStore([(node.split(":")[0], int(node.split(":")[1])) for node in nodes])
        client = store.connect()
        try:
            for name in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(name)
        finally:
            client.close()
            store.close()

    store = _opened(url, opener, cleanup)
    return Backend("redis-cluster", store, 0.2, _sleep_a_bit_more, cleanup, url)


def _sentinel(server: str, options: str, opener: Callable[[str], Store]) -> Backend:
    """A store under a fresh key prefix on the run's Sentinel topology (``replicas=1``)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    url = _with_options(server, f"prefix={prefix}", options)

    def cleanup() -> None:
        from redis.sentinel import Sentinel  # noqa: PLC0415 (only the Redis tests need it)

        hosts = server.split("://", 1)[1].split("/", 1)[0].split(",")
        sentinels = [(host.split(":")[0], int(host.split(":")[1])) for host in hosts]
        client = Sentinel(sentinels, socket_timeout=5).master_for("sessionlocker")
        with client:
            names = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if names:
                client.delete(*names)

    store = _opened(url, opener, cleanup)
    return Backend("redis-sentinel", store, 0.2, _sleep_a_bit_more, cleanup, url)


def _postgresql(name: str, server: str, options: str, opener: Callable[[str], Store]) -> Backend:
    """A store in a fresh schema (the store creates it) on the run's PostgreSQL server."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    url = _with_options(server, f"schema={schema}", options)

    def cleanup() -> None:
        import psycopg  # noqa: PLC0415 (only the PostgreSQL tests need it)

        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    store = _opened(url, opener, cleanup)
    return Backend(name, store, 0.2, _sleep_a_bit_more, cleanup, url)


def _opened(url: str, opener: Callable[[str], Store], cleanup: Callable[[], None]) -> Store:
    """``opener(url)``; if it fails, what it may have made on the server is removed."""
    try:
        return opener(url)
    except BaseException:
        cleanup()
        raise


def drive(services: list[LockerService], done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Run frames of every service until ``done()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for service in services:
            service.update()
        time.sleep(0.005)


def load(service: LockerService, key: str, mode: str = "repeat") -> Locker:
    """A new locker of ``service`` for ``key``, driven until it is loaded or failed."""
    locker = service.locker(key)
    locker.acquire(mode)  # type: ignore[arg-type]
    drive([service], lambda: locker.status in (Status.LOADED, Status.FAILED))
    return locker


def undated(versions: list[Entry]) -> list[Versioned]:
    """Kept versions without their write times, to compare with ``Versioned`` values."""
    return [Versioned(version.value, version.revision) for version in versions]
