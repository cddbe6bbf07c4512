"""Concurrent ``AsyncLockerService.session()`` calls for one key wait in line (first come,
first served) and get the loaded record in turn, on every backend, with the service on
the sync store or on an async store of the same records (native on Redis and
PostgreSQL, on threads for memory and SQLite).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backends import fast_spec, open_backend
from sessionlocker import AsyncLockerService, LockUnavailable, Spec, Status
from sessionlocker.core.record import decode
from sessionlocker.stores import AsyncStore, Store, open_async_store, threaded


@dataclass
class Case:
    """A sync store to check with, and how to open an async store on the same records."""

    name: str
    sync: Store
    make: Callable[[], AsyncStore]

    def given(self, kind: str) -> Store | AsyncStore:
        return self.sync if kind == "sync" else self.make()


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster", "postgresql"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    backend = open_backend(request.param, tmp_path)
    sync, url = backend.store, backend.url
    if url is None:  # memory: the async store must share the sync store's records
        yield Case("memory", sync, lambda: threaded(sync))
    else:
        yield Case(request.param, sync, lambda: open_async_store(url))
    backend.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def wallet(**overrides: Any) -> Spec[dict[str, Any]]:
    return fast_spec("wallets", lambda: {"coins": 0, "by": []}, **overrides)


def stored(store: Store, key: str) -> Any:
    value = store.read(f"wallets/{key}")
    assert value is not None
    return decode(value.value)


async def aclose(store: Store | AsyncStore) -> None:
    if isinstance(store, AsyncStore) and not isinstance(store, Store):
        await store.aclose()


async def pay(
    service: AsyncLockerService[Any], who: str, tokens: list[int | None], mode: str = "repeat"
) -> None:
    """One request: one coin, in a block of its own."""
    async with service.session("8", mode, timeout=30) as wallet:  # type: ignore[arg-type]
        tokens.append(wallet.token)
        wallet.data["coins"] += 1
        wallet.data["by"].append(who)
        await asyncio.sleep(0)  # others run meanwhile: they wait in line


def test_twenty_concurrent_sessions_on_one_key_add_twenty_coins(case: Case, kind: str) -> None:
    async def main() -> None:
        store = case.given(kind)
        async with AsyncLockerService(store, wallet()) as service:
            tokens: list[int | None] = []
            names = [f"r{index}" for index in range(20)]
            await asyncio.gather(*(pay(service, name, tokens) for name in names))
            assert service.lockers() == []
        record = stored(case.sync, "8")
        assert record.data == {"coins": 20, "by": names}  # each in turn, in arrival order
        assert record.lock is None
        # one load for all twenty: the same fencing epoch, no release and re-acquire
        assert set(tokens) == {record.epoch}
        await aclose(store)

    asyncio.run(main())


async def until(condition: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    """Wait (by polling the loop) until ``condition()``; fail after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


class Holder:
    """A session() of key 8 that stays in its block until ``leave`` is set."""

    def __init__(self, service: AsyncLockerService[Any], who: str, mode: str = "repeat") -> None:
        self.inside = asyncio.Event()
        self.leave = asyncio.Event()
        self.task = asyncio.create_task(self._hold(service, who, mode))

    async def _hold(self, service: AsyncLockerService[Any], who: str, mode: str) -> None:
        async with service.session("8", mode, timeout=30) as wallet:  # type: ignore[arg-type]
            wallet.data["coins"] += 1
            wallet.data["by"].append(who)
            self.inside.set()
            await self.leave.wait()


def test_a_cancelled_waiter_leaves_nothing_behind(case: Case, kind: str) -> None:
    async def main() -> None:
        store = case.given(kind)
        async with AsyncLockerService(store, wallet(), max_waiters=2) as service:
            first = Holder(service, "first")
            await first.inside.wait()
            gone = asyncio.create_task(pay(service, "gone", []))
            later = Holder(service, "later")
            await asyncio.sleep(0)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            # its place is free again: two may wait, and two do
            extra = asyncio.create_task(pay(service, "extra", []))
            first.leave.set()
            await later.inside.wait()
            later.leave.set()
            await asyncio.gather(first.task, later.task, extra)
            assert service.lockers() == []
        record = stored(case.sync, "8")
        assert record.data == {"coins": 3, "by": ["first", "later", "extra"]}
        assert record.lock is None
        await aclose(store)

    asyncio.run(main())


def test_a_waiter_cancelled_as_its_turn_comes_passes_the_turn_on(case: Case) -> None:
    async def main() -> None:
        async with AsyncLockerService(case.sync, wallet()) as service:
            async with service.session("8", timeout=30) as wallet_:
                wallet_.data["by"].append("first")
                skipped = asyncio.create_task(pay(service, "skipped", []))
                last = asyncio.create_task(pay(service, "last", []))
                await asyncio.sleep(0)  # both are in line
            skipped.cancel()  # its turn came at the block's end; it has not run since
            with pytest.raises(asyncio.CancelledError):
                await skipped
            await last
            # with nobody left the record is released as usual
            await service.wait_until(lambda: service.lockers() == [], 15)
            async with service.session("8", timeout=30) as again:
                assert again.data["by"] == ["first", "last"]
        record = stored(case.sync, "8")
        assert record.data["by"] == ["first", "last"]
        assert record.lock is None

    asyncio.run(main())


def test_the_bound_on_waiters_and_the_timeout_cover_the_wait_in_line(case: Case) -> None:
    async def main() -> None:
        async with AsyncLockerService(case.sync, wallet(), max_waiters=2) as service:
            first = Holder(service, "first")
            await first.inside.wait()
            with pytest.raises(LockUnavailable, match=r"within 0\.2 s"):
                async with service.session("8", timeout=0.2):
                    pytest.fail("must not get the record while it is in use")
            waiting = [asyncio.create_task(pay(service, f"w{n}", [])) for n in range(2)]
            await asyncio.sleep(0)
            with pytest.raises(LockUnavailable, match="max_waiters=2"):
                async with service.session("8", timeout=30):
                    pytest.fail("must not get past the bound")
            with pytest.raises(LockUnavailable, match="in use by another session"):
                async with service.session("8", "cancel"):
                    pytest.fail("cancel does not wait")
            first.leave.set()
            await asyncio.gather(first.task, *waiting)
        assert stored(case.sync, "8").data == {"coins": 3, "by": ["first", "w0", "w1"]}

    asyncio.run(main())


def test_a_release_request_is_honoured_between_two_users(case: Case, kind: str) -> None:
    # Slow force: only the holder's release, not a force timeout, hands the record over.
    slow = {"force_timeout": 20.0, "poll_period": 1.0}

    async def main() -> None:
        store = case.given(kind)
        async with (
            AsyncLockerService(store, wallet(**slow)) as here,
            AsyncLockerService(case.sync, wallet(**slow)) as there,
        ):
            first = Holder(here, "first")
            await first.inside.wait()
            queued = [asyncio.create_task(pay(here, f"q{n}", [])) for n in range(2)]
            remote = Holder(there, "remote", "force")
            locker = here.get("8")
            assert locker is not None
            await until(lambda: locker.release_requested, "the holder sees the request")
            assert locker.status is Status.LOADED  # not released within the block
            first.leave.set()
            await remote.inside.wait()  # the other server got it when the block ended
            assert not any(task.done() for task in queued)
            remote.leave.set()
            await asyncio.gather(first.task, remote.task, *queued)
        record = stored(case.sync, "8")
        assert record.data == {"coins": 4, "by": ["first", "remote", "q0", "q1"]}
        assert record.lock is None
        await aclose(store)

    asyncio.run(main())


def test_aclose_releases_the_record_and_fails_the_line(case: Case) -> None:
    async def main() -> None:
        service = AsyncLockerService(case.sync, wallet())
        first = Holder(service, "first")
        await first.inside.wait()
        waiting = asyncio.create_task(pay(service, "late", []))
        await asyncio.sleep(0)
        closing = asyncio.create_task(service.aclose())
        await until(lambda: service.get("8") is None, "the record is released")
        first.leave.set()
        assert await closing
        outcomes = await asyncio.gather(first.task, waiting, return_exceptions=True)
        assert [type(outcome).__name__ for outcome in outcomes] == ["NoneType", "UsageError"]
        assert stored(case.sync, "8").data == {"coins": 1, "by": ["first"]}

    asyncio.run(main())


def test_linger_keeps_the_record_loaded_between_bursts(case: Case) -> None:
    async def main() -> None:
        async with AsyncLockerService(case.sync, wallet(linger=30.0)) as service:
            tokens: list[int | None] = []
            await pay(service, "burst 1", tokens)
            assert stored(case.sync, "8").lock is not None  # still loaded: lingering
            await pay(service, "burst 2", tokens)
            assert tokens[0] == tokens[1]  # the same load: no release and re-acquire
        record = stored(case.sync, "8")  # aclose released it, saved
        assert record.data == {"coins": 2, "by": ["burst 1", "burst 2"]}
        assert record.lock is None

    asyncio.run(main())


def test_a_lingering_record_is_released_when_linger_ends(case: Case) -> None:
    async def main() -> None:
        async with AsyncLockerService(case.sync, wallet(linger=0.3)) as service:
            await pay(service, "once", [])
            await service.wait_until(lambda: service.lockers() == [], 15)
            record = stored(case.sync, "8")
            assert record.data == {"coins": 1, "by": ["once"]}
            assert record.lock is None

    asyncio.run(main())


def test_a_lingering_record_goes_at_once_to_a_session_that_asks(case: Case) -> None:
    slow = {"force_timeout": 20.0, "poll_period": 0.5, "linger": 60.0}

    async def main() -> None:
        async with (
            AsyncLockerService(case.sync, wallet(**slow)) as here,
            AsyncLockerService(case.sync, wallet(**slow)) as there,
        ):
            first: list[int | None] = []
            await pay(here, "here", first)
            remote = Holder(there, "there", "force")
            await remote.inside.wait()  # long before the force timeout or the linger end
            remote.leave.set()
            await remote.task
            # the other service lingers too, and gives it back as soon as asked
            later: list[int | None] = []
            await asyncio.wait_for(pay(here, "here again", later, "force"), 60)
            assert later != first  # loaded again
        record = stored(case.sync, "8")
        assert record.data == {"coins": 3, "by": ["here", "there", "here again"]}
        assert record.lock is None

    asyncio.run(main())
