"""The optional ``Versions`` capability, the same on every backend that has it.

Each store keeps its last three versions here (``history=3``): memory and SQLite in
this process, Redis and PostgreSQL on the run's real servers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sessionlocker.core.protocol import Keep, Put, Versioned
from sessionlocker.errors import Conflict, UsageError
from sessionlocker.stores import MemoryStore, SQLiteStore, open_store
from sessionlocker.stores.base import Versions

DEPTH = 3


def _server_store(name: str, url: str) -> tuple[Versions, Callable[[], None]]:
    """A store keeping ``DEPTH`` versions, in a Redis key prefix or PostgreSQL schema of its own."""
    space = f"test_{uuid.uuid4().hex[:12]}"
    if name == "redis":
        import redis  # noqa: PLC0415 (only the Redis tests need it)

        def cleanup() -> None:
            with redis.Redis.from_url(url) as client:
                names = list(client.scan_iter(match=f"{space}:*", count=1000))
                if names:
                    client.delete(*names)

        store = open_store(f"{url}?history={DEPTH}&prefix={space}:")
    else:
        import psycopg  # noqa: PLC0415 (only the PostgreSQL tests need it)

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {space}")

        def cleanup() -> None:
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {space} CASCADE")

        store = open_store(f"{url}?history={DEPTH}&schema={space}")
    assert isinstance(store, Versions)
    return store, cleanup


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def versions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Versions]:
    name = request.param
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    store: Versions
    if name in ("redis", "postgresql"):
        fixture = "redis_url" if name == "redis" else "postgres_url"
        store, cleanup = _server_store(name, request.getfixturevalue(fixture))
    elif name == "memory":
        store = MemoryStore(history=DEPTH)
    else:
        store = SQLiteStore(tmp_path / "s.db", history=DEPTH)
    yield store
    store.close()  # type: ignore[attr-defined]
    cleanup()


def test_keeps_the_last_versions_newest_first(versions: Versions) -> None:
    store = versions
    assert store.history("k") == []
    revisions = []
    expected = None
    for n in range(5):
        expected = store.write("k", f"v{n}".encode(), expected)
        revisions.append(expected)
    store.write("other", b"x", None)
    assert store.history("k") == [
        Versioned(b"v4", revisions[4]),
        Versioned(b"v3", revisions[3]),
        Versioned(b"v2", revisions[2]),
    ]
    assert [v.value for v in store.history("other")] == [b"x"]


def test_a_conflict_or_a_keep_adds_no_version(versions: Versions) -> None:
    store = versions
    first = store.write("k", b"a", None)
    with pytest.raises(Conflict):
        store.write("k", b"lost", first + 1000)
    store.update("k", lambda current: Keep("kept"))
    assert [v.value for v in store.history("k")] == [b"a"]
    store.update("k", lambda current: Put(b"b", "put"))
    assert [v.value for v in store.history("k")] == [b"b", b"a"]


def test_history_outlives_a_delete(versions: Versions) -> None:
    store = versions
    revision = store.write("k", b"a", None)
    assert store.delete("k")
    assert store.read("k") is None
    assert store.history("k") == [Versioned(b"a", revision)]
    again = store.write("k", b"b", None)
    assert store.history("k") == [Versioned(b"b", again), Versioned(b"a", revision)]


def test_sqlite_history_by_url_default_and_off(tmp_path: Path) -> None:
    default = open_store(f"sqlite:///{tmp_path}/default.db")
    off = open_store(f"sqlite:///{tmp_path}/off.db?history=0")
    try:
        assert isinstance(default, SQLiteStore)
        assert isinstance(off, SQLiteStore)
        assert (default.history_depth, off.history_depth) == (10, 0)
        expected = None
        for n in range(12):
            expected = default.write("k", str(n).encode(), expected)
            off.write(f"k{n}", b"x", None)
        assert [v.value for v in default.history("k")] == [
            str(n).encode() for n in range(11, 1, -1)
        ]
        assert off.history("k0") == []
    finally:
        default.close()
        off.close()
    with pytest.raises(UsageError, match="history=-1 must be >= 0"):
        open_store(f"sqlite:///{tmp_path}/bad.db?history=-1")
