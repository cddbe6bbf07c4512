"""AsyncLockerService on async stores: memory and SQLite on threads, Redis and PostgreSQL
native, each on the run's real servers. A sync store on the same records checks what
was committed; the async store is made inside the event loop that uses it.

The tests that must hold for both kinds of store (send, purchases, 1,000 sessions) take
``kind``: the service gets the sync store itself, or an async store on its records.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backends import fast_spec as spec
from backends import open_backend
from sessionlocker import AsyncLockerService, Status, StoreError, UsageError
from sessionlocker.core.protocol import LeaseView, Transform, Updated, Versioned
from sessionlocker.core.record import decode
from sessionlocker.drivers.aio_executor import AsyncExecutor
from sessionlocker.purchases import Decision, Purchaser
from sessionlocker.stores import (
    AsyncStore,
    MemoryStore,
    Store,
    open_async_store,
    threaded,
)
from sessionlocker.stores._bridges import blocking

T = TypeVar("T")

#: A long force timeout and slow polling: only a notification makes a handoff quick.
SLOW_POLL = {"lease": 5.0, "autosave_period": 30.0, "force_timeout": 20.0, "poll_period": 10.0}


@dataclass
class Case:
    """A sync store to check with, and how to open an async store on the same records."""

    name: str
    sync: Store
    make: Callable[[], AsyncStore]
    #: The URL of the records (``None`` for memory: a URL would open other records).
    url: str | None = None

    def given(self, kind: str) -> Store | AsyncStore:
        """What a test hands the service: the sync store, or a new async store."""
        return self.sync if kind == "sync" else self.make()


async def aclose(store: Store | AsyncStore) -> None:
    """Close an async store a test made (the fixture closes the sync one; for memory,
    closing the async store closes it too: check the records first)."""
    if isinstance(store, AsyncStore) and not isinstance(store, Store):
        await store.aclose()


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster", "postgresql"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    backend = open_backend(request.param, tmp_path)
    sync, url = backend.store, backend.url
    if url is None:  # memory: the async store must share the sync store's records
        yield Case("memory", sync, lambda: threaded(sync))
    else:
        yield Case(request.param, sync, lambda: open_async_store(url), url)
    backend.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def stored(store: Store, key: str) -> Any:
    value = store.read(f"players/{key}")
    assert value is not None
    return decode(value.value)


def test_session_loads_saves_and_releases(case: Case) -> None:
    async def main() -> None:
        store = case.make()
        async with AsyncLockerService(store, spec()) as service:
            assert service.async_store is store
            async with service.session("p1", timeout=5) as player:
                player.data["log"].append("hello")
                await player.saved()
                assert stored(case.sync, "p1").data == {"log": ["hello"]}
                assert stored(case.sync, "p1").lock is not None
                player.data["log"].append("bye")
                player.mark_changed()
            assert player.status is Status.IDLE
        record = stored(case.sync, "p1")
        assert record.data == {"log": ["hello", "bye"]}
        assert record.lock is None
        assert not case.sync.get_lease(service.lease_id).exists  # the lease ended
        await store.aclose()

    asyncio.run(main())


def test_store_calls_are_awaited_on_the_loop(case: Case) -> None:
    """With an async store the frames' requests run as tasks of the loop, not on threads."""

    async def main() -> None:
        store = case.make()
        service = AsyncLockerService(store, spec())
        executor = service.frames._executor
        assert isinstance(executor, AsyncExecutor)
        async with service, service.session("p1", timeout=5) as player:
            player.data["log"].append("x")
            await player.saved()
        assert executor.pending == 0
        await store.aclose()

    asyncio.run(main())


class Callers:
    """An ``AsyncStore`` passing every call to ``inner``, noting which task made it.

    A call awaited natively runs in its caller's task; one that hopped to a thread and
    back (``BlockingStore``) runs in a task of its own.
    """

    def __init__(self, inner: AsyncStore) -> None:
        self.inner = inner
        self.tasks: dict[str, list[asyncio.Task[Any] | None]] = {}

    def _note(self, call: str) -> None:
        self.tasks.setdefault(call, []).append(asyncio.current_task())

    async def read(self, key: str) -> Versioned | None:
        self._note("read")
        return await self.inner.read(key)

    async def write(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> int:
        self._note("write")
        return await self.inner.write(key, value, expected, notify=notify)

    async def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        self._note("update")
        return await self.inner.update(key, transform, known)

    async def delete(self, key: str, expected: int | None = None) -> bool:
        self._note("delete")
        return await self.inner.delete(key, expected)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self._note("keys")
        async for key in self.inner.keys(prefix):
            yield key

    async def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        self._note("put_lease")
        await self.inner.put_lease(lease_id, ttl, info)

    async def get_lease(self, lease_id: str) -> LeaseView:
        self._note("get_lease")
        return await self.inner.get_lease(lease_id)

    async def drop_lease(self, lease_id: str) -> None:
        self._note("drop_lease")
        await self.inner.drop_lease(lease_id)

    async def aclose(self) -> None:
        self._note("aclose")
        await self.inner.aclose()


def test_send_is_awaited_in_the_callers_task_and_the_lease_drop_on_the_loop(case: Case) -> None:
    async def main() -> None:
        store = Callers(case.make())
        service = AsyncLockerService(store, spec())
        me = asyncio.current_task()
        async with service.session("p1", timeout=5) as player:
            player.data["log"].append("x")
            await player.saved()
        store.tasks.clear()
        message_id = await service.send("p2", "note", "hi")
        assert store.tasks == {"update": [me]}
        assert await service.aclose(5)
        # A task of its own on the loop (no thread), which aclose may leave at its deadline.
        (drop,) = store.tasks["drop_lease"]
        assert drop is not None
        assert drop is not me
        assert drop.get_loop() is asyncio.get_running_loop()
        assert "aclose" not in store.tasks  # a store the caller gave stays open
        with pytest.raises(UsageError, match="closed"):
            await service.send("p2", "note", "again")
        assert [m.id for m in stored(case.sync, "p2").inbox] == [message_id]
        assert not case.sync.get_lease(service.lease_id).exists
        await store.aclose()

    asyncio.run(main())


def test_a_url_opens_an_async_store_that_aclose_closes(case: Case) -> None:
    if case.url is None:
        pytest.skip("memory:// opens records of its own")
    url = case.url

    async def main() -> None:
        service = AsyncLockerService(url, spec())
        store = service.async_store
        assert store is not None
        assert isinstance(service.frames._executor, AsyncExecutor)
        async with service, service.session("p1", timeout=5) as player:
            player.data["log"].append("via url")
            player.mark_changed()
        with pytest.raises(StoreError, match="closed"):
            await store.read("players/p1")

    asyncio.run(main())
    assert stored(case.sync, "p1").data == {"log": ["via url"]}


def test_a_read_only_service_on_a_url_changes_nothing(case: Case) -> None:
    if case.url is None:
        pytest.skip("memory:// opens records of its own")
    url = case.url

    async def main() -> None:
        async with AsyncLockerService(url, spec(), read_only=True) as service:
            assert service.async_store is not None
            async with service.session("p1", timeout=5) as player:
                player.data["log"].append("kept here")
                await player.saved()
            assert await service.send("p2", "note", "hi")

    asyncio.run(main())
    assert case.sync.read("players/p1") is None
    assert case.sync.read("players/p2") is None


def test_force_handoff_is_driven_by_notifications(case: Case) -> None:
    """Polling every 10 s and a 20 s force timeout: a quick handoff means a wake-up."""
    if case.name == "sqlite":
        pytest.skip("SQLite does not notify; its holders see requests in their mailbox")

    async def ask(second: AsyncLockerService[Any]) -> Any:
        async with second.session("p1", "force", timeout=5) as other:
            return other.data

    async def main() -> None:
        first_store, second_store = case.make(), case.make()
        async with (
            AsyncLockerService(first_store, spec(**SLOW_POLL)) as first,
            AsyncLockerService(second_store, spec(**SLOW_POLL)) as second,
        ):
            async with first.session("p1", timeout=5) as player:
                player.data["log"].append("first")
                player.mark_changed()
                asking = asyncio.create_task(ask(second))
                # the request reaches the holder at once (it is honoured when the block ends)
                assert await first.wait_until(lambda: player.locker.release_requested, 5)
            assert await asking == {"log": ["first"]}  # and the release reaches the asker
            assert player.status is Status.IDLE
        await first_store.aclose()
        await second_store.aclose()

    asyncio.run(main())


def test_send_and_on_message(case: Case, kind: str) -> None:
    async def main() -> None:
        store = case.given(kind)
        async with (
            AsyncLockerService(store, spec()) as holder,
            AsyncLockerService(store, spec()) as sender,
        ):
            holder.on_message(
                "note", lambda locker, message: locker.data["log"].append(message.body)
            )
            async with holder.session("p1", timeout=5) as player:
                await sender.send("p1", "note", "hi")
                assert await holder.wait_until(lambda: player.data["log"] == ["hi"], 5)
                await player.saved()
        assert stored(case.sync, "p1").data == {"log": ["hi"]}
        await aclose(store)

    asyncio.run(main())


def test_purchases_are_granted_once(case: Case, kind: str) -> None:
    def grant(data: Any, receipt: Any) -> None:
        data["log"].append(receipt.product_id)

    async def main() -> None:
        store = case.given(kind)
        async with AsyncLockerService(store, spec()) as service:
            purchaser = Purchaser(service, grant)
            receipt = {"purchase_id": "r1", "product_id": "gems", "buyer": "p1"}
            assert await purchaser.process_async(receipt) is Decision.NOT_PROCESSED_YET
            async with service.session("p1", timeout=5) as player:
                assert await purchaser.process_async(receipt) is Decision.GRANTED
                assert await purchaser.process_async(receipt) is Decision.GRANTED
                assert player.data == {"log": ["gems"]}
            with pytest.raises(UsageError, match="process_async"):
                purchaser.process(receipt)
        record = stored(case.sync, "p1")
        assert record.data == {"log": ["gems"]}
        assert [entry.purchase_id for entry in record.purchases] == ["r1"]
        await aclose(store)

    asyncio.run(main())


def test_a_thousand_concurrent_sessions_save_everything(case: Case, kind: str) -> None:
    # Every waiter used to be woken after every frame: on SQLite (hundreds of frames)
    # this took minutes. The frame task now checks the waiters' conditions itself.
    count = 1000

    async def play(service: AsyncLockerService, index: int) -> None:
        async with service.session(f"p{index}", timeout=60) as player:
            player.data["log"].append(index)
            await player.saved()
            player.data["log"].append("left")
            player.mark_changed()

    async def main() -> None:
        store = case.given(kind)
        async with AsyncLockerService(store, spec(), workers=8) as service:
            await asyncio.gather(*(play(service, index) for index in range(count)))
            assert service.lockers() == []
        for index in range(count):
            record = stored(case.sync, f"p{index}")
            assert record.data == {"log": [index, "left"]}
            assert record.lock is None
            assert record.release_requests == ()
        await aclose(store)

    asyncio.run(main())


def test_a_blocking_call_from_the_loop_thread_is_refused() -> None:
    async def main() -> None:
        view = blocking(threaded(MemoryStore()), asyncio.get_running_loop())
        view.bind(asyncio.get_running_loop(), threading.get_ident())
        with pytest.raises(UsageError, match="await it instead"):
            view.read("k")

    asyncio.run(main())
