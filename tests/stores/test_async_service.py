"""AsyncLockerService on async stores: memory and SQLite on threads, Redis and PostgreSQL
native, each on the run's real servers. A sync store on the same records checks what
was committed; the async store is made inside the event loop that uses it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sessionlocker import AsyncLockerService, Spec, Status, UsageError
from sessionlocker.core.record import decode
from sessionlocker.drivers.aio_executor import AsyncExecutor
from sessionlocker.stores import (
    AsyncStore,
    MemoryStore,
    Store,
    open_async_store,
    open_store,
    threaded,
)
from sessionlocker.stores.async_blocking import blocking

from .conftest import postgres_backend, redis_backend

FAST = {"lease": 0.6, "autosave_period": 0.2, "force_timeout": 0.4, "poll_period": 0.02}
#: A long force timeout and slow polling: only a notification makes a handoff quick.
SLOW_POLL = {"lease": 5.0, "autosave_period": 30.0, "force_timeout": 20.0, "poll_period": 10.0}


def spec(**settings: float) -> Spec:
    return Spec("players", lambda: {"log": []}, **(settings or FAST))  # type: ignore[arg-type]


@dataclass
class Case:
    """A sync store to check with, and how to open an async store on the same records."""

    name: str
    sync: Store
    make: Callable[[], AsyncStore]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    if request.param == "memory":
        memory = MemoryStore()
        yield Case("memory", memory, lambda: threaded(memory))
        memory.close()
        return
    urls: list[str] = []

    def opener(url: str) -> Store:
        urls.append(url)
        return open_store(url)

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 's.db'}"
        sync = opener(url)
        yield Case("sqlite", sync, lambda: open_async_store(url))
        sync.close()
        return
    if request.param == "redis":
        backend = redis_backend(request.getfixturevalue("redis_url"), opener)
    else:
        backend = postgres_backend(request.getfixturevalue("postgres_url"), opener)
    yield Case(request.param, backend.store, lambda: open_async_store(urls[0]))
    backend.store.close()
    backend.cleanup()


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
        assert not case.sync.get_session(service.session_id).exists  # the lease ended
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


def test_force_handoff_is_driven_by_notifications(case: Case) -> None:
    """Polling every 10 s and a 20 s force timeout: a quick handoff means a wake-up."""
    if case.name == "sqlite":
        pytest.skip("SQLite does not notify; its holders see requests at their autosave")

    async def main() -> None:
        first_store, second_store = case.make(), case.make()
        async with (
            AsyncLockerService(first_store, spec(**SLOW_POLL)) as first,
            AsyncLockerService(second_store, spec(**SLOW_POLL)) as second,
        ):
            async with first.session("p1", timeout=5) as player:
                player.data["log"].append("first")
                player.mark_changed()
                async with second.session("p1", "force", timeout=5) as other:
                    assert player.status is Status.IDLE  # saved and let go on request
                    assert other.data == {"log": ["first"]}
        await first_store.aclose()
        await second_store.aclose()

    asyncio.run(main())


def test_send_and_on_message(case: Case) -> None:
    async def main() -> None:
        store = case.make()
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
        await store.aclose()

    asyncio.run(main())


def test_a_blocking_call_from_the_loop_thread_is_refused() -> None:
    async def main() -> None:
        view = blocking(threaded(MemoryStore()), asyncio.get_running_loop())
        view.bind(asyncio.get_running_loop(), threading.get_ident())
        with pytest.raises(UsageError, match="await it instead"):
            view.read("k")

    asyncio.run(main())
