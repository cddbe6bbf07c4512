"""Frames of the asyncio driver on an async store.

- A caller that awaits with no deadline (``wait_until``, ``session()``, ``saved()``)
  runs the frames it waits for itself and awaits their store calls: a save is sent and
  its result taken in one frame, and the frame task is not woken for it.
- The frame task never waits for a store call: while one caller's save hangs in the
  store, the frame task goes on saving another locker.
- A caller cancelled while its save is out does not cut the save short: the result
  still reaches the locker.

Frames are counted (every ``LockerService._frame`` call), never timed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backends import fast_spec, open_backend
from sessionlocker import AsyncLockerService, Spec, Status
from sessionlocker.core.protocol import Transform, Updated, Versioned
from sessionlocker.core.record import decode
from sessionlocker.drivers.service import LockerService
from sessionlocker.stores import AsyncStore, MemoryStore, Store, threaded

T = TypeVar("T")

#: No lease renewal, autosave or poll within a test: only the test's own work makes frames.
QUIET = {"lease": 60.0, "autosave_period": 600.0, "poll_period": 600.0, "force_timeout": 60.0}


def spec() -> Spec[Any]:
    return fast_spec(**QUIET)


@pytest.fixture(params=["memory", "redis", "postgresql"])
def async_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """How to make an async store (inside the test's loop) on a real backend: a URL (the
    service opens it natively and closes it), or the memory store on threads."""
    backend = open_backend(request.param, tmp_path)
    sync, url = backend.store, backend.url
    yield (lambda: threaded(sync)) if url is None else (lambda: url)
    backend.close()


class Frames:
    """Counts the frames of ``service``, and the store calls each frame sent."""

    def __init__(self, service: LockerService[Any]) -> None:
        self.count = 0
        frame = service._frame

        def counted(*args: Any, **kwargs: Any) -> None:
            self.count += 1
            frame(*args, **kwargs)

        service._frame = counted  # type: ignore[method-assign]


async def loaded(service: AsyncLockerService[Any], key: str) -> Any:
    locker = service.locker(key)
    locker.acquire()
    settled = lambda: locker.status is Status.LOADED and not service.frames.in_flight  # noqa: E731
    assert await service.wait_until(settled, 10)
    return locker


def test_an_awaited_save_takes_one_frame(async_store: Any) -> None:
    async def main() -> None:
        async with AsyncLockerService(async_store(), spec()) as service:
            locker = await loaded(service, "p1")
            frames = Frames(service.frames)
            for n in range(1, 6):
                locker.data["n"] = n
                locker.mark_changed()
                locker.force_save()
                await service.wait_until(lambda: not locker.changes_pending)
                assert frames.count == n  # sent and confirmed in the same frame
            await asyncio.sleep(0.05)  # the frame task, had it been woken, ran by now
            assert frames.count == 5

    asyncio.run(main())


def test_a_session_takes_one_frame_to_load_and_one_to_save_and_release(
    async_store: Any,
) -> None:
    async def main() -> None:
        async with AsyncLockerService(async_store(), spec()) as service:
            async with service.session("p1") as player:  # the lease is taken first
                player.data["n"] = 0
            assert await service.wait_until(lambda: not service.frames.in_flight, 10)
            frames = Frames(service.frames)
            for n in range(1, 4):
                async with service.session("p1") as player:
                    assert frames.count == 2 * n - 1  # the load
                    player.data["n"] = n
                assert frames.count == 2 * n  # the final save and release
            assert service.frames.get("p1") is None

    asyncio.run(main())


class Hanging(MemoryStore):
    """The memory store, whose updates of ``key`` wait until ``go`` is set."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.go = threading.Event()
        self.waiting = threading.Event()

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        if key == self.key:
            self.waiting.set()
            assert self.go.wait(30)
        return super().update(key, transform, known)


def stored_n(store: Store, key: str) -> Any:
    found = store.read(f"players/{key}")
    assert found is not None
    return decode(found.value).data["n"]


def test_the_frame_task_goes_on_while_a_callers_save_hangs() -> None:
    store = Hanging("players/slow")

    async def main() -> None:
        async_store: AsyncStore = threaded(store)
        async with AsyncLockerService(async_store, spec(), workers=2) as service:
            store.go.set()
            slow, quick = await loaded(service, "slow"), await loaded(service, "quick")
            store.go.clear()
            slow.data["n"] = 1
            slow.mark_changed()
            slow.force_save()
            waiting = asyncio.ensure_future(service.wait_until(lambda: not slow.changes_pending))
            assert await asyncio.to_thread(store.waiting.wait, 10)
            quick.data["n"] = 2
            quick.mark_changed()
            quick.force_save()
            # Saved by the frame task while the first caller still waits for its save.
            assert await service.wait_until(lambda: not quick.changes_pending, 10)
            assert stored_n(store, "quick") == 2
            assert not waiting.done()
            store.go.set()
            assert await waiting
            assert stored_n(store, "slow") == 1

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cut_its_save_short() -> None:
    store = Hanging("players/p1")

    async def main() -> None:
        async_store: AsyncStore = threaded(store)
        async with AsyncLockerService(async_store, spec()) as service:
            store.go.set()
            locker = await loaded(service, "p1")
            store.go.clear()
            locker.data["n"] = 7
            locker.mark_changed()
            locker.force_save()
            waiting = asyncio.ensure_future(service.wait_until(lambda: not locker.changes_pending))
            assert await asyncio.to_thread(store.waiting.wait, 10)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            store.go.set()
            assert await service.wait_until(lambda: not locker.changes_pending, 10)
            assert locker.status is Status.LOADED
            assert stored_n(store, "p1") == 7

    asyncio.run(main())


class Seen(MemoryStore):
    """The memory store, noting the ``known`` each update came with."""

    def __init__(self) -> None:
        super().__init__()
        self.known: list[Versioned | None] = []

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        self.known.append(known)
        return super().update(key, transform, known)


def test_the_next_async_session_of_a_key_starts_from_what_this_service_wrote() -> None:
    seen = Seen()

    async def main() -> None:
        async with AsyncLockerService(threaded(seen), spec()) as service:
            async with service.session("p1") as player:
                player.data["n"] = 1
            written = seen.read("players/p1")
            seen.known.clear()
            async with service.session("p1") as player:
                assert player.data["n"] == 1
                player.data["n"] = 2
        assert seen.known[0] == written  # the load: one conditional write on the guess
        assert stored_n(seen, "p1") == 2

    asyncio.run(main())
