"""Quiet writes: a holder's save that keeps its lock wakes no one.

Only a changed lock, a release request or a message is worth waking another process
for; a holder's ordinary save is none of those, so its ``Put`` is ``quiet`` and a
``Notifying`` store skips the notification (Redis: no PUBLISH; PostgreSQL: no NOTIFY;
memory: no wake call). Every other write still notifies.

Each check writes quietly, then loudly, and waits for the loud write's wake-up: a
store delivers notifications in write order (one Redis connection, PostgreSQL's commit
order, memory's writer thread), so had the quiet write notified, its wake-up would
have come first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, drive, load, open_backend, server_url
from sessionlocker import LockerService, Spec, Status
from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.stores import open_async_store
from sessionlocker.stores.base import Notifying

NOTIFYING = ["memory", "redis", "postgresql"]


@pytest.fixture(params=NOTIFYING)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path)
    assert isinstance(made.store, Notifying)
    yield made
    made.close()


class Revisions:
    """A ``wake`` that keeps the revisions it was told of and lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[int | None] = []
        self.keys: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, key: str, revision: int | None = None) -> None:
        with self._changed:
            self.seen.append(revision)
            self.keys.append(key)
            self._changed.notify_all()

    def wait_for_key(self, key: str, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: key in self.keys, timeout)

    def of(self, key: str) -> list[int | None]:
        """The revisions woken for ``key``, in order."""
        with self._changed:
            return [r for k, r in zip(self.keys, self.seen, strict=True) if k == key]

    def wait_for(self, revision: int, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: revision in self.seen, timeout)


def put(quiet: bool) -> object:
    def transform(current: Versioned | None) -> Put[None]:
        number = int(current.value) if current is not None else 0
        return Put(str(number + 1).encode(), None, quiet=quiet)

    return transform


def watched(backend: Backend, key: str) -> Revisions:
    """A watch on ``key`` that is surely subscribed (a loud write has woken it)."""
    assert isinstance(backend.store, Notifying)
    revisions = Revisions()
    backend.store.watch(revisions).add(key)
    for _ in range(50):  # a subscription may take a moment to start
        revision = backend.store.update(key, put(quiet=False)).current
        assert revision is not None
        if revisions.wait_for(revision.revision, timeout=0.1):
            return revisions
    raise AssertionError("the watch never woke")


def test_a_quiet_update_wakes_no_watcher_and_a_loud_one_does(backend: Backend) -> None:
    revisions = watched(backend, "k")
    quiet = backend.store.update("k", put(quiet=True)).current
    loud = backend.store.update("k", put(quiet=False)).current
    assert quiet is not None
    assert loud is not None
    assert revisions.wait_for(loud.revision)
    assert quiet.revision not in revisions.seen
    assert backend.store.read("k") == loud  # the quiet write was stored all the same


def test_a_write_with_notify_false_wakes_no_watcher(backend: Backend) -> None:
    revisions = watched(backend, "k")
    current = backend.store.read("k")
    assert current is not None
    quiet = backend.store.write("k", b"quiet", current.revision, notify=False)
    loud = backend.store.write("k", b"loud", quiet)
    assert revisions.wait_for(loud)
    assert quiet not in revisions.seen


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
def test_the_async_stores_write_quietly_too(kind: str, tmp_path: Path) -> None:
    made = open_backend(kind, tmp_path)
    try:
        revisions = watched(made, "k")
        assert made.url is not None

        async def both() -> tuple[int, int]:
            store = open_async_store(made.url or server_url(kind))
            try:
                quiet = (await store.update("k", put(quiet=True))).current
                loud = (await store.update("k", put(quiet=False))).current
                assert quiet is not None
                assert loud is not None
                return quiet.revision, loud.revision
            finally:
                await store.aclose()

        quiet, loud = asyncio.run(both())
        assert revisions.wait_for(loud)
        assert quiet not in revisions.seen
    finally:
        made.close()


def test_a_holders_saves_wake_no_one_but_its_release_does(backend: Backend) -> None:
    spec = Spec("quiet", lambda: {"coins": 0}, autosave_period=3600.0)
    service = LockerService(backend.store, spec, workers=1)
    try:
        locker = load(service, "p1")
        store_key = spec.store_key("p1")
        revisions = watched_key(backend, store_key)
        held = backend.store.read(store_key)
        assert held is not None
        for _ in range(5):
            locker.data["coins"] += 1
            locker.mark_changed()
            locker.force_save()
            drive([service], lambda: not locker.changes_pending)
        locker.release()
        drive([service], lambda: locker.status is Status.IDLE)
        released = backend.store.read(store_key)
        assert released is not None
        assert revisions.wait_for(released.revision)
        # Five saves and a release: one wake-up. (A new subscription may also wake once
        # when it starts, with the revision stored then or with None.)
        woken = [r for r in revisions.of(store_key) if r is not None and r > held.revision]
        assert woken == [released.revision]
    finally:
        service.close(timeout=5)


def watched_key(backend: Backend, store_key: str) -> Revisions:
    """A watch on a record a locker holds, surely subscribed, without writing to it
    (a write would take the holder's lock away). Memory subscribes at once; Redis and
    PostgreSQL wake once when a key's subscription starts (with the revision stored
    then, or None), and that wake-up is awaited."""
    assert isinstance(backend.store, Notifying)
    revisions = Revisions()
    backend.store.watch(revisions).add(store_key)
    if backend.name != "memory":
        assert revisions.wait_for_key(store_key), "the subscription never started"
    return revisions
