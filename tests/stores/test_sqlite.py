"""What only the SQLite store promises: its file, its locking, its errors, its processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sessionlocker.stores
from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.errors import StoreError, UsageError
from sessionlocker.stores import SQLiteStore


def increment(current: Versioned | None) -> Put[int]:
    number = int(current.value) if current is not None else 0
    return Put(str(number + 1).encode(), number + 1)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def test_missing_directory_is_a_usage_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "there"
    with pytest.raises(UsageError, match="does not exist") as caught:
        SQLiteStore(missing / "store.db")
    assert str(missing) in str(caught.value)
    assert not missing.exists()


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_not_a_file_path(path: str) -> None:
    with pytest.raises(UsageError):
        SQLiteStore(path)


def test_bad_busy_timeout(db: Path) -> None:
    with pytest.raises(UsageError, match="busy_timeout"):
        SQLiteStore(db, busy_timeout=-1)


def test_file_is_opened_lazily_and_uses_wal(db: Path) -> None:
    store = SQLiteStore(db)
    assert not db.exists()
    store.write("k", b"v", None)
    store.close()
    with sqlite3.connect(db) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert mode == "wal"
    assert {"records", "sessions", "counter"} <= tables


def test_revisions_keep_growing_across_reopen(db: Path) -> None:
    store = SQLiteStore(db)
    first = store.write("k", b"1", None)
    store.delete("k")
    store.close()

    again = SQLiteStore(db)
    assert again.read("k") is None
    assert again.write("k", b"2", None) > first
    again.close()


def test_update_ignores_known_and_runs_once_on_what_is_stored(db: Path) -> None:
    store = SQLiteStore(db)
    first = store.write("k", b"1", None)
    second = store.write("k", b"5", first)
    seen: list[Versioned | None] = []

    def counting(current: Versioned | None) -> Put[int]:
        seen.append(current)
        return increment(current)

    result = store.update("k", counting, Versioned(b"1", first))
    assert seen == [Versioned(b"5", second)]
    assert result.outcome == 6
    store.close()


def test_busy_database_gives_retryable_error_without_data(db: Path) -> None:
    store = SQLiteStore(db, busy_timeout=0.05)
    store.write("k", b"old", None)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # hold the write lock
        with pytest.raises(StoreError) as caught:
            store.write("k", b"secret-bytes", None)
        assert caught.value.retryable is True
        assert caught.value.unknown_outcome is False
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert "secret-bytes" not in str(caught.value)
        assert store.read("k") == Versioned(b"old", 1)  # readers are not blocked under WAL
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.write("k", b"new", 1) > 1  # and the store works again
    store.close()


def test_not_a_database_gives_permanent_error(db: Path) -> None:
    db.write_bytes(b"this is not a database, just some bytes" * 100)
    store = SQLiteStore(db)
    with pytest.raises(StoreError) as caught:
        store.read("k")
    assert caught.value.retryable is False
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    store.close()


def test_close_closes_the_connections_of_every_thread(db: Path) -> None:
    store = SQLiteStore(db)
    store.write("k", b"v", None)

    def use() -> None:
        store.read("k")
        store.write("other", b"v", None)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    store.close()
    # Leaving WAL mode needs every other connection gone; it fails while one is open.
    connection = sqlite3.connect(db, timeout=0.1)
    try:
        (mode,) = connection.execute("PRAGMA journal_mode = DELETE").fetchone()
    finally:
        connection.close()
    assert mode == "delete"
    with pytest.raises(StoreError, match="closed"):
        store.read("k")


# Opening: SQLite's busy handler does not cover the switch to WAL mode (a read upgraded to
# a write), so these failed at once with "database is locked" before the fix.


def test_opening_a_new_file_waits_for_the_write_lock(db: Path) -> None:
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # the file is new: the store must switch it to WAL
    release = threading.Timer(0.3, lambda: blocker.execute("ROLLBACK"))
    store = SQLiteStore(db, busy_timeout=5.0)
    started = time.monotonic()
    release.start()
    try:
        assert store.write("k", b"v", None) == 1
    finally:
        release.join()
        blocker.close()
        store.close()
    assert time.monotonic() - started >= 0.25


def test_opening_gives_up_after_the_busy_timeout(db: Path) -> None:
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    store = SQLiteStore(db, busy_timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as caught:
            store.read("k")
        waited = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert caught.value.retryable is True
    assert caught.value.unknown_outcome is False
    assert waited >= 0.3
    assert store.read("k") is None  # the next call opens the file
    store.close()


def _update_together(store: SQLiteStore, threads: int, rounds: int) -> list[StoreError]:
    """Run ``rounds`` increments in each of ``threads`` threads that start at once."""
    ready = threading.Barrier(threads)
    errors: list[StoreError] = []

    def work() -> None:
        ready.wait()  # every thread opens its first connection at the same moment
        for _ in range(rounds):
            try:
                store.update("counter", increment)
            except StoreError as exc:
                errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def test_threads_opening_a_new_file_together_never_see_it_busy(tmp_path: Path) -> None:
    # Before the fix, about one trial in eight failed; 30 trials take about a second.
    threads, rounds = 4, 10
    for trial in range(30):
        store = SQLiteStore(tmp_path / f"trial-{trial}.db")
        errors = _update_together(store, threads, rounds)
        stored = store.read("counter")
        store.close()
        assert errors == []
        assert stored is not None
        assert int(stored.value) == threads * rounds


_WORKER = """
import sys
from sessionlocker.core.protocol import Put
from sessionlocker.stores import SQLiteStore

def increment(current):
    number = int(current.value) if current is not None else 0
    return Put(str(number + 1).encode(), number + 1)

store = SQLiteStore(sys.argv[1], busy_timeout=10.0)
for _ in range(int(sys.argv[2])):
    store.update("counter", increment)
store.close()
"""


@pytest.mark.slow
def test_processes_count_exactly(db: Path) -> None:
    processes, rounds = 3, 60
    source = Path(next(iter(sessionlocker.stores.__path__))).parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    # The file does not exist yet: the processes also race to create it and its schema.
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(db), str(rounds)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for child in children:
        _out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode(errors="replace")
    store = SQLiteStore(db)
    stored = store.read("counter")
    store.close()
    assert stored is not None
    assert int(stored.value) == processes * rounds
