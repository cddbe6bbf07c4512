"""One suite for every store that notifies (``Notifying``): what a watch must do.

Delivery may be asynchronous (Redis pub/sub, PostgreSQL LISTEN), so each check waits a
few seconds for a wake-up, and a subscription may take a moment to start: the first
write is repeated until it wakes. The memory store wakes at once, in the writer's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends import Backend, open_backend
from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.errors import UsageError
from sessionlocker.stores import MemoryStore
from sessionlocker.stores.base import Notifying


@pytest.fixture(params=["memory", "redis", "redis-cluster", "postgresql"])
def notifying(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path)
    assert isinstance(made.store, Notifying)
    yield made
    made.close()


def increment(current: Versioned | None) -> Put[int]:
    number = int(current.value) if current is not None else 0
    return Put(str(number + 1).encode(), number + 1)


class Wakes:
    """A ``wake`` callable that records keys and lets a test wait for them."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.revisions: list[int | None] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, key: str, revision: int | None = None) -> None:
        with self._changed:
            self.keys.append(key)
            self.revisions.append(revision)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def wait_for(self, key: str, count: int = 1, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.keys.count(key) >= count, timeout)


def until_woken(wakes: Wakes, key: str, write: Callable[[], object]) -> None:
    """Write until a wake-up for ``key`` comes: the subscription may start late."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        write()
        if wakes.wait_for(key, timeout=0.2):
            return
    pytest.fail(f"no wake-up for {key!r}")


def test_writes_deletes_and_updates_wake_watched_keys_only(notifying: Backend) -> None:
    store = notifying.store
    assert isinstance(store, Notifying)
    wakes = Wakes()
    watch = store.watch(wakes)
    watch.add("k")
    until_woken(wakes, "k", lambda: store.update("k", increment))
    seen = wakes.keys.count("k")
    store.write("other", b"x", None)
    current = store.read("k")
    assert current is not None
    assert store.delete("k", expected=current.revision)
    assert wakes.wait_for("k", count=seen + 1)
    store.write("k", b"again", None)
    assert wakes.wait_for("k", count=seen + 2)
    assert "other" not in wakes.keys
    watch.close()


def test_a_wake_carries_the_revision_and_a_write_before_subscribing_is_not_missed(
    notifying: Backend,
) -> None:
    store = notifying.store
    assert isinstance(store, Notifying)
    wakes = Wakes()
    watch = store.watch(wakes)
    watch.add("k")
    early = store.write("k", b"1", None)  # maybe before the subscription is heard
    assert wakes.wait_for("k")
    assert wakes.revisions[-1] is None or wakes.revisions[-1] >= early
    # a watcher that has seen revision ``early`` can tell it needs no second look
    for _ in range(20):
        current = store.read("k")
        assert current is not None
        written = store.write("k", b"2", current.revision)
        if wakes.wait_for("k", count=wakes.keys.count("k") + 1, timeout=2):
            break
    assert written in wakes.revisions
    watch.close()


def test_discard_and_close_stop_wake_ups(notifying: Backend) -> None:
    store = notifying.store
    assert isinstance(store, Notifying)
    stays, goes = Wakes(), Wakes()
    watching, leaving = store.watch(stays), store.watch(goes)
    watching.add("k")
    leaving.add("k")
    leaving.add("j")
    until_woken(goes, "k", lambda: store.update("k", increment))
    leaving.discard("k")
    leaving.discard("never-added")  # absent is fine
    leaving.close()
    leaving.close()  # idempotent
    before = len(goes.keys)
    until_woken(stays, "k", lambda: store.update("k", increment))
    store.write("j", b"", None)
    time.sleep(0.2)  # time for a stray wake-up to arrive
    assert len(goes.keys) == before
    watching.close()


def test_memory_store_wakes_synchronously_in_the_writer_thread() -> None:
    store = MemoryStore()
    wakes = Wakes()
    watch = store.watch(wakes)
    watch.add("k")
    store.write("k", b"1", None)
    assert wakes.keys == ["k"]  # already called when write returned
    assert wakes.threads == {threading.current_thread().name}
    watch.close()
    with pytest.raises(UsageError, match="closed"):
        watch.add("k")


def test_memory_wake_may_call_the_store_and_may_fail() -> None:
    store = MemoryStore()
    seen: list[object] = []

    def wake(key: str, revision: int | None = None) -> None:
        seen.append(store.read(key))  # the store's lock is not held during a wake
        raise RuntimeError("callback bug")

    watch = store.watch(wake)
    watch.add("k")
    revision = store.write("k", b"1", None)  # the write is committed: no error reaches here
    assert seen == [store.read("k")]
    assert store.read("k") is not None
    assert store.write("k", b"2", revision) > revision
    watch.close()
