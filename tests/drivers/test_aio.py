"""AsyncLockerService: the asyncio driver on real stores (memory, SQLite, Redis, PostgreSQL).

``send``, purchases and the 1,000 concurrent sessions are tested on sync and async
stores of every backend in ``tests/stores/test_async_service.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import fast_spec as spec
from backends import open_backend
from sessionlocker import (
    AsyncLockerService,
    CorruptRecord,
    LockerService,
    LockLost,
    LockUnavailable,
    Status,
    UnstorableData,
    UsageError,
)
from sessionlocker.core.modes import Attempt, Mode
from sessionlocker.core.record import decode
from sessionlocker.stores import FaultyStore, MemoryStore, SQLiteStore, Store
from sessionlocker.stores._bridges import threaded


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


@pytest.fixture(params=["memory", "sqlite"])
def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def stored(store: Store, key: str, namespace: str = "players") -> Any:
    value = store.read(f"{namespace}/{key}")
    assert value is not None
    return decode(value.value)


def held_elsewhere(store: Store, key: str) -> LockerService:
    """A frame-loop holder of ``key`` that is then never driven: it answers no request."""
    holder = LockerService(store, spec(lease=10, force_timeout=10))
    locker = holder.locker(key)
    locker.acquire()
    assert holder.run_until(lambda: locker.status is Status.LOADED, 5)
    return holder


def test_session_loads_saves_and_releases(store: Store) -> None:
    async def main() -> None:
        async with AsyncLockerService(store, spec()) as service:
            async with service.session("p1", timeout=5) as player:
                assert player.status is Status.LOADED
                assert player.is_available()
                player.data["log"].append("hello")
                await player.saved()
                assert stored(store, "p1").data == {"log": ["hello"]}  # committed, still held
                assert stored(store, "p1").lock is not None
                player.data["log"].append("bye")
                player.mark_changed()
            assert player.status is Status.IDLE
        record = stored(store, "p1")
        assert record.data == {"log": ["hello", "bye"]}
        assert record.lock is None
        assert not store.get_lease(service.lease_id).exists  # the lease ended cleanly

    asyncio.run(main())


def raw(store: Store, key: str, namespace: str = "players") -> bytes:
    """The stored bytes of ``key``: what "as it was" is compared on."""
    value = store.read(f"{namespace}/{key}")
    assert value is not None
    return value.value


def force_then_wait(attempt: Attempt) -> str:
    """A mode callable: ask the holder to release, and keep asking."""
    return "force"


WAITING_MODES: list[Mode] = ["repeat", "force", force_then_wait]


@pytest.mark.parametrize("mode", WAITING_MODES, ids=["repeat", "force", "callable"])
def test_a_timed_out_load_leaves_the_held_record_byte_for_byte(store: Store, mode: Mode) -> None:
    holder = held_elsewhere(store, "p1")
    before = raw(store, "p1")

    async def main() -> None:
        async with AsyncLockerService(store, spec(lease=10, force_timeout=10)) as waiter:
            with pytest.raises(LockUnavailable, match="within"):
                async with waiter.session("p1", mode, timeout=0.3):
                    pytest.fail("must not yield")
            assert waiter.lockers() == []
            assert raw(store, "p1") == before  # already when the session() call returned
            with pytest.raises(LockUnavailable, match="held by"):
                async with waiter.session("p1", "cancel"):
                    pytest.fail("must not yield")
            assert raw(store, "p1") == before

    asyncio.run(main())
    assert raw(store, "p1") == before  # and the waiter's aclose wrote nothing to it
    holder.close()


@pytest.mark.parametrize("mode", WAITING_MODES, ids=["repeat", "force", "callable"])
def test_a_cancelled_wait_leaves_the_held_record_byte_for_byte(store: Store, mode: Mode) -> None:
    holder = held_elsewhere(store, "p1")
    before = raw(store, "p1")

    async def main() -> None:
        async with AsyncLockerService(store, spec(lease=10, force_timeout=10)) as waiter:

            async def open_it() -> None:
                async with waiter.session("p1", mode):
                    pytest.fail("must not yield")

            task = asyncio.create_task(open_it())
            if mode == "repeat":  # it writes nothing; it waits (polling)
                await asyncio.sleep(0.3)
            else:  # cancelled after its release request was written
                await waiter.wait_until(lambda: bool(stored(store, "p1").release_requests), 5)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert waiter.lockers() == []
            assert raw(store, "p1") == before  # withdrawn before the cancel returned

    asyncio.run(main())
    assert raw(store, "p1") == before
    holder.close()


def test_a_cancelled_load_of_a_free_record_leaves_no_lock(local_store: Store) -> None:
    async def main() -> None:
        async with AsyncLockerService(local_store, spec()) as service:
            for _ in range(20):  # cancel at varied points of the load
                task = asyncio.create_task(_open_and_hold(service))
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert service.lockers() == []
                value = local_store.read("players/p1")
                if value is not None:
                    record = decode(value.value)
                    assert record.lock is None
                    assert record.release_requests == ()

    asyncio.run(main())


async def _open_and_hold(service: AsyncLockerService) -> None:
    async with service.session("p1", timeout=5):
        await asyncio.sleep(10)


def test_saved_and_exit_raise_lock_lost_when_stolen(store: Store) -> None:
    async def main() -> None:
        async with (
            AsyncLockerService(store, spec()) as first,
            AsyncLockerService(store, spec()) as thief,
        ):
            with pytest.raises(LockLost):
                async with first.session("p1", timeout=5) as player:
                    async with thief.session("p1", "steal", timeout=5) as stolen:
                        stolen.data["log"].append("thief")
                        await stolen.saved()
                    player.data["log"].append("stale")
                    with pytest.raises(LockLost):
                        await player.saved()
        assert stored(store, "p1").data == {"log": ["thief"]}

    asyncio.run(main())


def test_force_hands_over_between_async_services_when_the_block_ends(store: Store) -> None:
    async def ask(service: AsyncLockerService) -> Any:
        async with service.session("p1", "force", timeout=10) as other:
            return other.data

    async def main() -> None:
        async with (
            AsyncLockerService(store, spec(force_timeout=10)) as first,
            AsyncLockerService(store, spec(force_timeout=10)) as second,
        ):
            async with first.session("p1", timeout=5) as player:
                player.data["log"].append("first")
                player.mark_changed()
                asking = asyncio.create_task(ask(second))
                assert await first.wait_until(lambda: player.locker.release_requested, 10)
                assert player.status is Status.LOADED  # never released within the block
                player.data["log"].append("after the request")
            # the block ended: saved and released on the request, nothing lost
            assert await asking == {"log": ["first", "after the request"]}

    asyncio.run(main())


def test_data_errors_at_load_and_at_save(local_store: Store) -> None:
    local_store.write("players/bad", b"\x00 not a record", None)

    async def main() -> None:
        async with AsyncLockerService(local_store, spec()) as service:
            with pytest.raises(CorruptRecord):
                async with service.session("bad", timeout=5):
                    pytest.fail("must not yield")
            with pytest.raises(UnstorableData):
                async with service.session("p1", timeout=5) as player:
                    player.data["log"].append(math.inf)
                    with pytest.raises(UnstorableData):
                        await player.saved()
            async with service.session("p2", timeout=5) as player:  # repaired: no error
                player.data["log"].append(math.inf)
                with pytest.raises(UnstorableData):
                    await player.saved()
                player.data["log"][-1] = "repaired"
                player.mark_changed()

    asyncio.run(main())
    assert stored(local_store, "p2").data == {"log": ["repaired"]}
    assert local_store.read("players/bad").value == b"\x00 not a record"  # type: ignore[union-attr]
    assert stored(local_store, "p1").lock is None


def test_aclose_saves_and_releases_every_locker_and_is_idempotent(local_store: Store) -> None:
    async def main() -> None:
        service = AsyncLockerService(local_store, spec())
        for key in ("a", "b"):
            locker = service.locker(key)
            locker.acquire()
            locker.edit(lambda data, key=key: data["log"].append(key))  # replayed after load
        assert await service.wait_until(
            lambda: all(x.status is Status.LOADED for x in service.lockers()), 5
        )
        assert await service.aclose(5)
        assert await service.aclose(5)
        with pytest.raises(UsageError, match="closed"):
            service.locker("c")

    asyncio.run(main())
    for key in ("a", "b"):
        record = stored(local_store, key)
        assert record.data == {"log": [key]}
        assert record.lock is None


def test_a_url_is_opened_and_closed_by_the_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"

    async def main() -> None:
        async with AsyncLockerService(url, spec()) as service:
            async with service.session("p1", timeout=5) as player:
                player.data["log"].append(1)
                player.mark_changed()

    asyncio.run(main())
    reopened = SQLiteStore(tmp_path / "u.db")
    assert stored(reopened, "p1").data == {"log": [1]}
    reopened.close()


def test_bad_timeouts_are_refused(local_store: Store) -> None:
    async def main() -> None:
        async with AsyncLockerService(local_store, spec()) as service:
            with pytest.raises(UsageError, match="timeout"):
                async with service.session("p1", timeout=0):
                    pytest.fail("must not yield")

    asyncio.run(main())


def test_wait_until_hands_a_condition_error_to_its_waiter_only(local_store: Store) -> None:
    async def main() -> None:
        async with AsyncLockerService(local_store, spec()) as service:
            calls: list[int] = []

            def broken() -> bool:
                calls.append(1)
                if len(calls) > 1:  # false at first (the waiter registers), then it raises
                    raise ValueError("condition broke")
                return False

            async with service.session("p1", timeout=5) as player:
                with pytest.raises(ValueError, match="condition broke"):
                    await service.wait_until(broken, 5)
                await player.saved()  # the frame task is still running for everyone else
            assert await service.wait_until(lambda: False, 0.05) is False

    asyncio.run(main())


def test_a_waiter_is_told_when_the_frame_task_stops(local_store: Store) -> None:
    async def main() -> None:
        service = AsyncLockerService(local_store, spec())
        waiter = asyncio.create_task(service.wait_until(lambda: False))
        await asyncio.sleep(0.05)
        assert await service.aclose(5)
        with pytest.raises(UsageError, match="not running"):
            await waiter

    asyncio.run(main())


def test_the_frame_task_can_be_cancelled_as_its_wait_ends(local_store: Store) -> None:
    # asyncio.run cancels the frame task left running here just as wake() ends its
    # wait: asyncio.wait_for on 3.11 swallowed that cancel, and asyncio.run never ended.
    async def main() -> AsyncLockerService:
        service = AsyncLockerService(local_store, spec())
        service.start()
        await asyncio.sleep(0.05)
        service.wake()
        return service

    for _ in range(5):
        service = asyncio.run(main())
        assert service.frames.close(1)  # the pool and the lease, from this thread


def steal_on_second_attempt(attempts: list[int]) -> Mode:
    """A mode callable that waits once, then steals (ProfileService's handler)."""

    def decide(attempt: Attempt) -> str:
        attempts.append(attempt.number)
        return "steal" if attempt.number >= 2 else "repeat"

    return decide


@pytest.mark.parametrize("mode", ["repeat", "force", "steal", "cancel", "callable"])
def test_every_load_mode_against_a_record_another_async_service_holds(
    store: Store, mode: str
) -> None:
    attempts: list[int] = []
    chosen = steal_on_second_attempt(attempts) if mode == "callable" else mode

    async def load(service: AsyncLockerService) -> list[Any]:
        async with service.session("p1", chosen, timeout=5) as player:
            seen = list(player.data["log"])
            player.data["log"].append("loader")
            player.mark_changed()
        return seen

    async def main() -> None:
        async with (
            AsyncLockerService(store, spec(force_timeout=5)) as holder,
            AsyncLockerService(store, spec()) as loader,
        ):
            held = holder.locker("p1")
            held.acquire()
            held.edit(lambda data: data["log"].append("holder"))
            assert await holder.wait_until(
                lambda: held.status is Status.LOADED and not held.changes_pending, 5
            )
            if mode == "cancel":
                before = raw(store, "p1")
                with pytest.raises(LockUnavailable, match="held by"):
                    await load(loader)
                assert raw(store, "p1") == before
                assert held.status is Status.LOADED
                return
            task = asyncio.create_task(load(loader))
            if mode == "repeat":  # it waits until the holder lets go
                await asyncio.sleep(0.3)
                assert not task.done()
                held.release()
            assert await task == ["holder"]  # the holder's committed data, in every mode
            if mode == "force":  # it saved and released on request (its reply may come later)
                assert await holder.wait_until(lambda: held.status is Status.IDLE, 30)
            if mode in ("steal", "callable"):
                held.edit(lambda data: data["log"].append("stale"))
                assert await holder.wait_until(lambda: held.status is Status.LOST, 5)
        record = stored(store, "p1")
        assert record.data == {"log": ["holder", "loader"]}
        assert record.lock is None
        assert record.release_requests == ()
        if mode == "callable":
            assert attempts[:2] == [1, 2]

    asyncio.run(main())


def test_the_lease_renewal_does_not_queue_behind_lockers_calls() -> None:
    # 100 loads of 100 ms each on an async store whose calls share the loop's few threads:
    # all at once they would queue the renewal for well over its renew deadline (1 s).
    # At most ``workers`` record updates run at once, so the renewal finds a thread free.
    # (A 1.5 s lease leaves half a second for a busy machine's stalls.)
    async def main() -> None:
        store = threaded(FaultyStore(MemoryStore(), latency=0.1))
        timing = spec(autosave_period=30.0, lease=1.5)
        async with AsyncLockerService(store, timing, workers=4) as service:
            lockers = [service.locker(f"p{i}") for i in range(100)]
            for locker in lockers:
                locker.acquire()
            loaded = lambda: all(one.status is Status.LOADED for one in lockers)  # noqa: E731
            assert await service.wait_until(loaded, 60)
            assert service.frames.lease.gaps == 0
            assert all(locker.is_available() for locker in lockers)

    asyncio.run(main())


def test_workers_below_one_are_refused_on_an_async_store() -> None:
    with pytest.raises(UsageError, match="workers must be at least 1"):
        AsyncLockerService(threaded(MemoryStore()), spec(), workers=0)
