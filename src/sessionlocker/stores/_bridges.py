"""The async bridges: ``threaded(store)`` and ``blocking(store, loop)``.

``threaded(store)``: any ``Store`` as an ``AsyncStore``, each call on a worker thread.
For the backends whose client is blocking and local (memory, SQLite) and for wrappers
(``FaultyStore``, ``ReadOnlyStore``, ``CountingStore``) this is the honest async form:
the sync store does the work, unchanged, and the event loop never blocks on it. Calls
run through ``asyncio.to_thread``, so on the loop's default thread pool. A store that
notifies stays notifying: ``threaded`` returns a ``NotifyingThreadedAsyncStore`` whose
``watch`` is the sync store's own.

``blocking(store, loop)``: an ``AsyncStore`` seen as a ``Store``, from other threads.
Each call runs the async store's coroutine on ``loop`` and waits for its result, so
code written for a sync store can use an async store that lives on an event loop.
Calling it from that loop's own thread would wait on itself forever, so that raises
``UsageError`` instead. The asyncio driver does not use it for its frames (they await
the async store directly); two things need it: a read-only ``AsyncLockerService`` on an
async store, whose ``ReadOnlyStore`` overlay is a sync store read from worker threads,
and the conformance suite, which runs the sync tests against every async store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from sessionlocker.core.protocol import LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.errors import StoreError, UsageError
from sessionlocker.stores.base import (
    AsyncDated,
    AsyncStore,
    Batching,
    Entry,
    KeepsHistory,
    Notifying,
    Outcome,
    Store,
    Wake,
    Watch,
    read_entry,
    update_many,
)

__all__ = [
    "BlockingStore",
    "NotifyingBlockingStore",
    "NotifyingThreadedAsyncStore",
    "ThreadedAsyncStore",
    "blocking",
    "threaded",
]


T = TypeVar("T")


class ThreadedAsyncStore:
    """An ``AsyncStore`` running every call of the sync store ``sync`` on a thread."""

    def __init__(self, sync: Store) -> None:
        self.sync = sync

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync!r})"

    async def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        return await asyncio.to_thread(self.sync.read, key)

    async def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the sync store's time of the write (if it keeps one)."""
        return await asyncio.to_thread(read_entry, self.sync, key)

    async def history(self, key: str) -> list[Entry]:
        """The sync store's history entries; ``UsageError`` when it keeps none."""
        if not isinstance(self.sync, KeepsHistory):
            raise UsageError(f"this store ({type(self.sync).__name__}) keeps no versions")
        return await asyncio.to_thread(self.sync.history, key)

    async def write(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> int:
        """Write if the stored revision is ``expected``; ``Conflict`` carries what is stored."""
        return await asyncio.to_thread(self.sync.write, key, value, expected, notify=notify)

    async def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """The sync store's own update (SQLite's one transaction), on a thread."""
        return await asyncio.to_thread(self.sync.update, key, transform, known)

    @property
    def sends_batches(self) -> bool:
        """Whether ``update_many`` is the sync store's own batch (see ``base.batches``)."""
        return isinstance(self.sync, Batching)

    async def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """The sync store's ``update_many`` (one transaction, one lock hold), on a thread."""
        return await asyncio.to_thread(update_many, self.sync, updates)

    async def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed."""
        return await asyncio.to_thread(self.sync.delete, key, expected)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key starting with ``prefix``, listed on a thread when iteration starts."""
        found = await asyncio.to_thread(lambda: list(self.sync.keys(prefix)))
        for key in found:
            yield key

    async def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of the store's time."""
        await asyncio.to_thread(self.sync.put_lease, lease_id, ttl, info)

    async def get_lease(self, lease_id: str) -> LeaseView:
        """What the store knows of a session's lease."""
        return await asyncio.to_thread(self.sync.get_lease, lease_id)

    async def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        await asyncio.to_thread(self.sync.drop_lease, lease_id)

    async def aclose(self) -> None:
        """Close the sync store (on a thread: closing may wait for connections)."""
        await asyncio.to_thread(self.sync.close)


class NotifyingThreadedAsyncStore(ThreadedAsyncStore):
    """``ThreadedAsyncStore`` of a ``Notifying`` store: also ``watch``, the store's own."""

    def __init__(self, sync: Notifying) -> None:
        if not isinstance(sync, Store):
            raise UsageError(f"{type(sync).__name__} is not a Store")
        super().__init__(sync)
        self._notifying = sync

    def watch(self, wake: Wake) -> Watch:
        """The sync store's watch: ``wake(key, revision)`` may come from any thread."""
        return self._notifying.watch(wake)


def threaded(store: Store) -> ThreadedAsyncStore:
    """``store`` as an ``AsyncStore``, notifying if ``store`` is."""
    if isinstance(store, Notifying):
        return NotifyingThreadedAsyncStore(store)
    return ThreadedAsyncStore(store)


def _started(
    loop: asyncio.AbstractEventLoop,
    make: Callable[[], Awaitable[T]],
    result: concurrent.futures.Future[T],
) -> None:
    """On ``loop``: start ``make()`` and pass its outcome to ``result``."""
    if not result.set_running_or_notify_cancel():
        return
    task = asyncio.ensure_future(make(), loop=loop)

    def settle(done: asyncio.Future[T]) -> None:
        if done.cancelled():
            ended = StoreError("the event loop ended the store call", unknown_outcome=True)
            result.set_exception(ended)
        elif done.exception() is not None:
            result.set_exception(cast("BaseException", done.exception()))
        else:
            result.set_result(done.result())

    task.add_done_callback(settle)


class BlockingStore:
    """A ``Store`` whose calls run ``inner``'s coroutines on ``loop`` (``bind`` it later
    when the loop is not known yet)."""

    def __init__(self, inner: AsyncStore, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.inner = inner
        self._loop = loop
        self._loop_thread: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    def bind(self, loop: asyncio.AbstractEventLoop, thread: int | None = None) -> None:
        """Run calls on ``loop`` (whose thread is ``thread``, when known)."""
        self._loop, self._loop_thread = loop, thread

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the loop and wait for it. The coroutine is made on the loop
        itself, so a loop that ends before running it leaves no coroutine unawaited."""
        loop = self._loop
        if loop is None:
            raise UsageError("this store is not bound to an event loop yet")
        if threading.get_ident() == self._loop_thread:
            raise UsageError("a blocking call on the event loop's own thread: await it instead")
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(_started, loop, make, result)
        except RuntimeError:
            raise UsageError("the event loop of this store is closed") from None
        return result.result()

    def read(self, key: str) -> Versioned | None:
        """``inner.read``, waited for."""
        return self._run(lambda: self.inner.read(key))

    def read_entry(self, key: str) -> Entry | None:
        """``read`` with the store's write time, when the async store keeps one."""
        if isinstance(self.inner, AsyncDated):
            inner = self.inner
            return self._run(lambda: inner.read_entry(key))
        current = self.read(key)
        return None if current is None else Entry(current.value, current.revision)

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """``inner.write``, waited for."""
        return self._run(lambda: self.inner.write(key, value, expected, notify=notify))

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``inner.update``, waited for."""
        return self._run(lambda: self.inner.update(key, transform, known))

    def delete(self, key: str, expected: int | None = None) -> bool:
        """``inner.delete``, waited for."""
        return self._run(lambda: self.inner.delete(key, expected))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """``inner.keys``, gathered now."""

        async def listed() -> list[str]:
            return [key async for key in self.inner.keys(prefix)]

        return iter(self._run(listed))

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """``inner.put_lease``, waited for."""
        self._run(lambda: self.inner.put_lease(lease_id, ttl, info))

    def get_lease(self, lease_id: str) -> LeaseView:
        """``inner.get_lease``, waited for."""
        return self._run(lambda: self.inner.get_lease(lease_id))

    def drop_lease(self, lease_id: str) -> None:
        """``inner.drop_lease``, waited for."""
        self._run(lambda: self.inner.drop_lease(lease_id))

    def close(self) -> None:
        """``inner.aclose``, waited for."""
        self._run(self.inner.aclose)


class NotifyingBlockingStore(BlockingStore):
    """``BlockingStore`` of a notifying async store: ``watch`` is the store's own."""

    def watch(self, wake: Wake) -> Watch:
        """``inner.watch`` (already synchronous)."""
        if not isinstance(self.inner, Notifying):
            raise UsageError(f"{self.inner!r} does not notify")
        return self.inner.watch(wake)


def blocking(store: AsyncStore, loop: asyncio.AbstractEventLoop | None = None) -> BlockingStore:
    """``store`` as a ``Store``, notifying if ``store`` is."""
    if isinstance(store, Notifying):
        return NotifyingBlockingStore(store, loop)
    return BlockingStore(store, loop)
