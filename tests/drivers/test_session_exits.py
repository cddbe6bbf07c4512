"""Honest session exits: a block whose lock ended early never ends quietly.

A ``session()`` block (sync and async) defers a release request to its end; a lock
that still ends within it (stolen, or forced out after ``force_timeout``) makes the
block raise ``LockLost`` on the way out. A change marked once the lock ended gets
change id 0 and ``when_saved(False)`` at once, and never reaches the store. The easy
API (no block, requests honoured at once) says the same through ``mark_changed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import fast_spec, open_backend
from sessionlocker import (
    AsyncLockerService,
    EasyStore,
    LockerService,
    LockLost,
    Status,
)
from sessionlocker.core.locker import Locker
from sessionlocker.core.record import decode
from sessionlocker.stores import Store

#: A force timeout far beyond the handoff, so every handoff here is the holder's own.
SPEC = fast_spec(force_timeout=30.0)


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def stored(store: Store, key: str) -> Any:
    value = store.read(f"players/{key}")
    assert value is not None
    return decode(value.value).data


def taken_by_force(holder: LockerService, other: LockerService, key: str) -> Locker:
    """Another service forces ``key`` open while the holder's frames run."""
    wanted = other.locker(key)
    wanted.acquire("force")
    assert holder.run_until(lambda: (other.update(), wanted.status is Status.LOADED)[1], 30)
    return wanted


def marked_after(locker: Locker) -> list[bool]:
    locker.data["log"].append("after")
    change = locker.mark_changed()
    assert change == 0  # no save of this locker can hold it
    answers: list[bool] = []
    locker.when_saved(change, answers.append)
    assert answers == [False]  # at once
    return answers


def test_sync_session_raises_lock_lost_when_stolen_mid_block(store: Store) -> None:
    with LockerService(store, SPEC) as holder, LockerService(store, SPEC) as thief:
        with pytest.raises(LockLost), holder.session("p1", timeout=30) as locker:
            locker.data["log"].append("before")
            locker.mark_changed()
            with thief.session("p1", "steal", timeout=30) as stolen:
                stolen.data["log"].append("thief")
            # the thief's takeover reaches the idle holder (a notification or its mailbox)
            assert holder.run_until(lambda: locker.status is Status.LOST, 30)
            marked_after(locker)
    assert stored(store, "p1") == {"log": ["thief"]}


def test_sync_session_raises_lock_lost_when_forced_out_mid_block(store: Store) -> None:
    """A block defers a release request to its end; ``force`` takes over after its
    timeout, and the block learns it and raises at exit."""
    quick = fast_spec(force_timeout=0.5)
    with LockerService(store, quick) as holder, LockerService(store, quick) as other:
        with pytest.raises(LockLost), holder.session("p1", timeout=30) as locker:
            wanted = taken_by_force(holder, other, "p1")
            assert holder.run_until(lambda: locker.status is Status.LOST, 30)
            marked_after(locker)
        wanted.data["log"].append("other")
        wanted.mark_changed()
        wanted.release()
        assert other.run_until(lambda: wanted.status is Status.IDLE, 30)
    assert stored(store, "p1") == {"log": ["other"]}


def test_async_session_raises_lock_lost_when_stolen_mid_block(store: Store) -> None:
    async def main() -> None:
        async with (
            AsyncLockerService(store, SPEC) as first,
            AsyncLockerService(store, SPEC) as thief,
        ):
            with pytest.raises(LockLost):
                async with first.session("p1", timeout=30) as player:
                    async with thief.session("p1", "steal", timeout=30) as stolen:
                        stolen.data["log"].append("thief")
                    await first.wait_until(lambda: player.status is Status.LOST, 30)
                    marked_after(player.locker)
                    with pytest.raises(LockLost):
                        await player.saved()

    asyncio.run(main())
    assert stored(store, "p1") == {"log": ["thief"]}


def test_easy_profile_says_a_change_after_its_handoff_is_never_saved(store: Store) -> None:
    with LockerService(store, SPEC) as holder, LockerService(store, SPEC) as other:
        profiles = EasyStore(holder)
        profile = profiles.start_session("p1")
        events: list[str] = []
        profile.on("replaced", lambda _: events.append("replaced"))
        assert holder.run_until(profile.is_loaded, 30)
        profile.data["log"].append("before")
        profile.mark_changed()
        wanted = taken_by_force(holder, other, "p1")
        assert events == ["replaced"]
        assert not profile.is_active()
        assert profile.locker.error is None  # a handoff on request is no error here
        profile.data["log"].append("after")
        assert profile.mark_changed() == 0
        assert profile.edit(lambda data: data["log"].append("edit")) == 0
        profile.end_session()  # nothing left to end
        wanted.release()
        assert other.run_until(lambda: wanted.status is Status.IDLE, 30)
    assert stored(store, "p1") == {"log": ["before"]}


def test_mark_changed_on_a_locker_never_loaded_or_released_is_0(store: Store) -> None:
    with LockerService(store, SPEC) as service:
        locker = service.locker("p1")
        assert locker.mark_changed() == 0  # idle: never loaded
        locker.acquire()
        assert locker.mark_changed() > 0  # loading: replayed on the loaded data
        assert service.run_until(lambda: locker.status is Status.LOADED, 30)
        assert locker.mark_changed() > 0
        locker.release()
        assert service.run_until(lambda: locker.status is Status.IDLE, 30)
        assert locker.error is None
        assert locker.mark_changed() == 0
