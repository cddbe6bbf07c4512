"""``force`` is a handoff on every store; idle lockers cost no store calls.

A live, driven holder learns of a release request through its process's mailbox, read
once per lease renewal (``drivers/mailbox.py``), so it saves its pending change and
hands off (``replaced``) well within ``force_timeout``, also on a store that sends no
notifications. An idle locker makes no store call of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import open_backend
from sessionlocker import AsyncLockerService, LockerService, Spec, Status
from sessionlocker.core.locker import Locker
from sessionlocker.core.record import decode
from sessionlocker.drivers.mailbox import PREFIX
from sessionlocker.stores import SQLiteStore, Store
from sessionlocker.stores.counting import CountingStore


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def quiet_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every backend, its notifications hidden: only the mailbox can tell a holder."""
    made = open_backend(request.param, tmp_path)
    yield CountingStore.wrap(made.store, notifications=False)
    made.close()


def stored_data(store: Store, key: str) -> Any:
    value = store.read(f"players/{key}")
    assert value is not None
    return decode(value.value).data


class DrivenHolder:
    """A service on its own thread, driven at about 60 frames a second (a game server),
    holding ``key`` with one change marked and not yet saved."""

    def __init__(self, store: Store, spec: Spec, key: str) -> None:
        self.service = LockerService(store, spec, "holder")
        self.events: list[str] = []
        self.answers: list[bool] = []
        self.loaded = threading.Event()
        self.ended = threading.Event()
        self._key = key
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        service = self.service
        locker = service.locker(self._key)
        for event in ("replaced", "lost", "released"):
            locker.on(event, lambda _, event=event: self.events.append(event))  # type: ignore[misc]
        locker.acquire()
        service.run_until(lambda: locker.status is Status.LOADED, 30)
        locker.data["log"].append("unsaved")
        locker.when_saved(locker.mark_changed(), self.answers.append)
        self.locker: Locker = locker
        self.loaded.set()
        while locker.status is Status.LOADED or locker.status is Status.RELEASING:
            service.update()
            time.sleep(1 / 60)
        self.ended.set()
        service.close()

    def join(self) -> None:
        self._thread.join(30)


def force_load(store: Store, spec: Spec, key: str) -> tuple[float, Any]:
    """Seconds until a ``force`` load of ``key`` from another session got it, and its data."""
    with LockerService(store, spec, "taker") as taker:
        started = time.monotonic()
        with taker.session(key, "force", timeout=60) as locker:
            return time.monotonic() - started, locker.data


def test_force_on_sqlite_with_default_timings_hands_off_within_force_timeout(
    tmp_path: Path,
) -> None:
    spec = Spec("players", lambda: {"log": []})  # autosave 30 s, lease 10 s, force 10 s
    holder = DrivenHolder(SQLiteStore(tmp_path / "a.db"), spec, "p1")
    assert holder.loaded.wait(30)
    seconds, data = force_load(SQLiteStore(tmp_path / "a.db"), spec, "p1")
    assert holder.ended.wait(30)
    holder.join()
    assert data == {"log": ["unsaved"]}  # the holder saved its change as it let go
    assert holder.events == ["replaced"]
    assert holder.answers == [True]
    assert seconds < spec.force_timeout


def test_force_is_a_handoff_on_every_backend_without_notifications(quiet_store: Store) -> None:
    spec = Spec("players", lambda: {"log": []}, lease=1.5, autosave_period=60.0)
    holder = DrivenHolder(quiet_store, spec, "p1")
    assert holder.loaded.wait(30)
    _, data = force_load(quiet_store, spec, "p1")
    assert holder.ended.wait(30)
    holder.join()
    assert data == {"log": ["unsaved"]}
    assert holder.events == ["replaced"]
    assert holder.answers == [True]


@pytest.mark.parametrize("backend", ["memory", "redis", "postgresql"])
def test_force_is_a_handoff_when_the_holder_misses_the_notification(
    backend: str, tmp_path: Path
) -> None:
    """Where the store notifies, the waiter holds its mailbox post back (the holder hears
    the notification); a holder that misses it still learns through the post, sent at
    the waiter's next poll. The holder's notifications are hidden here, the waiter's not."""
    made = open_backend(backend, tmp_path)
    try:
        spec = Spec("players", lambda: {"log": []}, lease=1.5, autosave_period=60.0)
        holder = DrivenHolder(CountingStore.wrap(made.store, notifications=False), spec, "p1")
        assert holder.loaded.wait(30)
        _, data = force_load(made.store, spec, "p1")
        assert holder.ended.wait(30)
        holder.join()
        assert data == {"log": ["unsaved"]}
        assert holder.events == ["replaced"]
        assert holder.answers == [True]
    finally:
        made.close()


def drive(service: LockerService, seconds: float) -> None:
    end = time.monotonic() + seconds
    service.run_until(lambda: time.monotonic() >= end)


def test_idle_loaded_lockers_make_no_store_calls(tmp_path: Path) -> None:
    spec = Spec("players", lambda: {"n": 0}, lease=3.0, autosave_period=0.2, poll_period=0.1)
    store = CountingStore(SQLiteStore(tmp_path / "a.db"))
    with LockerService(store, spec, "idle") as service:
        lockers = [service.locker(f"p{i}") for i in range(1000)]
        for locker in lockers:
            locker.acquire()
        assert service.run_until(lambda: all(lk.status is Status.LOADED for lk in lockers), 120)
        store.reset()
        drive(service, 2.0)  # ten autosave periods
        counts = store.counts()
        assert all(lk.is_available() for lk in lockers)
    assert counts["update"] == counts["write"] == 0
    # The one read per lease renewal is the mailbox's, for the whole process.
    assert counts["read"] <= counts["put_lease"] + 1
    assert counts["put_lease"] < 10


def wait_for(condition: Callable[[], bool], service: LockerService, timeout: float = 30) -> None:
    assert service.run_until(condition, timeout), "the condition did not come true in time"


def test_a_message_reaches_an_idle_holder_through_its_mailbox(quiet_store: Store) -> None:
    spec = Spec("players", lambda: {"log": []}, lease=1.5, autosave_period=60.0)
    with (
        LockerService(quiet_store, spec, "holder") as holder,
        LockerService(quiet_store, spec, "sender") as sender,
    ):
        holder.on_message("log", lambda locker, message: locker.data["log"].append(message.body))
        locker = holder.locker("p1")
        locker.acquire()
        wait_for(lambda: locker.status is Status.LOADED, holder)
        sender.send("p1", "log", "hello")
        wait_for(lambda: locker.data["log"] == ["hello"], holder)
    assert stored_data(quiet_store, "p1") == {"log": ["hello"]}


def test_an_idle_holder_learns_at_once_that_its_lock_was_stolen(quiet_store: Store) -> None:
    spec = Spec("players", lambda: {"log": []}, lease=1.5, autosave_period=60.0)
    with (
        LockerService(quiet_store, spec, "holder") as holder,
        LockerService(quiet_store, spec, "thief") as thief,
    ):
        locker = holder.locker("p1")
        locker.acquire()
        wait_for(lambda: locker.status is Status.LOADED, holder)
        with thief.session("p1", "steal", timeout=30):
            wait_for(lambda: locker.status is Status.LOST, holder)
            assert not locker.is_available()


def test_a_mailbox_is_emptied_once_read(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    spec = Spec("players", lambda: {"log": []}, lease=1.5, autosave_period=60.0)
    holder = DrivenHolder(store, spec, "p1")
    assert holder.loaded.wait(30)
    force_load(SQLiteStore(tmp_path / "a.db"), spec, "p1")
    assert holder.ended.wait(30)
    holder.join()
    assert list(store.keys(PREFIX)) == []
    assert store.history(f"{PREFIX}holder") == []


def test_force_is_a_handoff_between_async_services_on_an_async_sqlite_store(
    tmp_path: Path,
) -> None:
    """The mailbox read runs beside the native async calls (``AsyncExecutor``)."""
    spec = Spec("players", lambda: {"log": []}, lease=1.5, autosave_period=60.0)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    events: list[str] = []

    async def main() -> None:
        async with (
            AsyncLockerService(url, spec) as first,
            AsyncLockerService(url, spec) as second,
        ):
            assert first.async_store is not None
            locker = first.locker("p1")
            locker.on("replaced", lambda _: events.append("replaced"))
            locker.acquire()
            assert await first.wait_until(lambda: locker.status is Status.LOADED, 30)
            locker.data["log"].append("unsaved")
            locker.mark_changed()
            async with second.session("p1", "force", timeout=30) as other:
                assert other.data == {"log": ["unsaved"]}

    asyncio.run(main())
    assert events == ["replaced"]
