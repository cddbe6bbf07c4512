"""Where the lockers' store calls run, and how a frame sends them.

- The blocking ``session()`` (``run_until`` without a deadline) waits for the store
  anyway: its calls run on the caller's thread, with no thread hand-off.
- Frames driven by ``update()`` (a game server's loop), or by ``run_until`` with a
  deadline, never run a store call themselves: the pool does.
- The record updates that become due in one frame reach the store together, as one
  ``update_many`` call, and each locker gets its own result.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from backends import fast_spec as spec
from sessionlocker import LockerService, Status
from sessionlocker.core.protocol import Transform, Update, Updated, Versioned
from sessionlocker.core.record import decode
from sessionlocker.stores import MemoryStore
from sessionlocker.stores.base import Outcome

T = TypeVar("T")


class ThreadNotingStore(MemoryStore):
    """The memory store, noting the thread of every update and every batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.sizes: list[int] = []

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        self.threads.append(threading.get_ident())
        return super().update(key, transform, known)

    def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        self.threads.append(threading.get_ident())
        self.sizes.append(len(updates))
        return super().update_many(updates)


def test_a_blocking_session_calls_the_store_on_its_own_thread() -> None:
    store = ThreadNotingStore()
    with LockerService(store, spec()) as service:
        with service.session("p1") as locker:
            locker.data["coins"] = 1
            locker.mark_changed()
        assert store.threads  # the load, and the save and release at exit
        assert set(store.threads) == {threading.get_ident()}


def test_frames_of_a_game_loop_never_call_the_store_themselves() -> None:
    store = ThreadNotingStore()
    with LockerService(store, spec()) as service:
        locker = service.locker("p1")
        locker.acquire()
        assert service.run_until(lambda: locker.status is Status.LOADED, timeout=10)
        locker.data["coins"] = 1
        locker.mark_changed()
        locker.force_save()
        service.run_until(lambda: not locker.changes_pending, timeout=10)
        assert threading.get_ident() not in store.threads


def test_the_saves_due_in_one_frame_go_to_the_store_together() -> None:
    store = ThreadNotingStore()
    with LockerService(store, spec()) as service:
        lockers = [service.locker(f"p{i}") for i in range(20)]
        for locker in lockers:
            locker.acquire()
        service.run_until(lambda: all(lk.status is Status.LOADED for lk in lockers), 10)
        assert all(locker.status is Status.LOADED for locker in lockers)
        store.sizes.clear()
        for i, locker in enumerate(lockers):
            locker.data["coins"] = i
            locker.mark_changed()
            locker.force_save()
        service.run_until(lambda: not any(lk.changes_pending for lk in lockers), 10)
        assert store.sizes == [20]  # one frame, one batch, every save in it
    for i in range(20):
        stored = store.read(f"{spec().namespace}/p{i}")
        assert stored is not None
        assert decode(stored.value).data["coins"] == i
