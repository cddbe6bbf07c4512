"""The optional ``KeepsHistory`` capability, the same on every backend that has it.

Each store keeps its last three versions here (``history=3``): memory and SQLite in
this process, Redis and PostgreSQL on the run's real servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import open_backend, undated
from sessionlocker.core.protocol import Keep, Put, Versioned
from sessionlocker.errors import Conflict, UsageError
from sessionlocker.stores import SQLiteStore, _trim, open_store
from sessionlocker.stores.base import Dated, KeepsHistory

DEPTH = 3


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster", "postgresql"])
def versions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeepsHistory]:
    made = open_backend(request.param, tmp_path, history=DEPTH)
    assert isinstance(made.store, KeepsHistory)
    yield made.store
    made.close()


def test_keeps_the_last_versions_newest_first(versions: KeepsHistory) -> None:
    store = versions
    assert store.history("k") == []
    revisions = []
    expected = None
    for n in range(5):
        expected = store.write("k", f"v{n}".encode(), expected)
        revisions.append(expected)
    store.write("other", b"x", None)
    assert undated(store.history("k")) == [
        Versioned(b"v4", revisions[4]),
        Versioned(b"v3", revisions[3]),
        Versioned(b"v2", revisions[2]),
    ]
    assert [v.value for v in store.history("other")] == [b"x"]


def test_a_conflict_or_a_keep_adds_no_version(versions: KeepsHistory) -> None:
    store = versions
    first = store.write("k", b"a", None)
    with pytest.raises(Conflict):
        store.write("k", b"lost", first + 1000)
    store.update("k", lambda current: Keep("kept"))
    assert [v.value for v in store.history("k")] == [b"a"]
    store.update("k", lambda current: Put(b"b", "put"))
    assert [v.value for v in store.history("k")] == [b"b", b"a"]


def test_history_outlives_a_delete(versions: KeepsHistory) -> None:
    store = versions
    revision = store.write("k", b"a", None)
    assert store.delete("k")
    assert store.read("k") is None
    assert undated(store.history("k")) == [Versioned(b"a", revision)]
    again = store.write("k", b"b", None)
    assert undated(store.history("k")) == [Versioned(b"b", again), Versioned(b"a", revision)]


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


def test_each_kept_version_carries_the_store_s_write_time(versions: KeepsHistory) -> None:
    store = versions
    assert isinstance(store, Dated)
    before = time.time()
    first = store.write("k", b"a", None)
    second = store.write("k", b"b", first)
    after = time.time()
    kept = store.history("k")
    assert [(v.value, v.revision) for v in kept] == [(b"b", second), (b"a", first)]
    # The server's clock (Redis, PostgreSQL) is this machine's: allow for rounding only.
    for version in kept:
        assert version.written is not None
        assert before - 1 <= version.written <= after + 1
    current = store.read_entry("k")
    assert current == kept[0]
    assert store.read_entry("never") is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("trims", [False, True])
def test_sql_history_is_trimmed_by_some_writes_and_reads_the_same_either_way(
    backend: str, trims: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One write in TRIM_EVERY, at random, trims: here none does, or every one does.
    monkeypatch.setattr(_trim, "TRIM_EVERY", 1 if trims else 10**12)
    made = open_backend(backend, tmp_path, history=DEPTH)
    store = made.store
    assert isinstance(store, KeepsHistory)
    try:
        expected = None
        for n in range(8):
            expected = store.write("k", f"v{n}".encode(), expected)
        assert [v.value for v in store.history("k")] == [b"v7", b"v6", b"v5"]
        assert store.forget("k") == (DEPTH if trims else 8)  # the rows the table held
        assert store.history("k") == []
    finally:
        made.close()
