"""``threaded(store)``: any ``Store`` as an ``AsyncStore``, each call on a worker thread.

For the backends whose client is blocking and local (memory, SQLite) and for wrappers
(``FaultyStore``, ``ReadOnlyStore``, ``CountingStore``) this is the honest async form:
the sync store does the work, unchanged, and the event loop never blocks on it. Calls
run through ``asyncio.to_thread``, so on the loop's default thread pool.

A store that notifies stays notifying: ``threaded`` returns a
``NotifyingThreadedAsyncStore`` whose ``watch`` is the sync store's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from sessionlocker.core.protocol import SessionView, Transform, Updated, Versioned
from sessionlocker.errors import UsageError
from sessionlocker.stores.base import Notifying, Store, Version, Versions, Wake, Watch, read_version

__all__ = ["NotifyingThreadedAsyncStore", "ThreadedAsyncStore", "threaded"]

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

    async def read_version(self, key: str) -> Version | None:
        """What ``read`` returns, with the sync store's time of the write (if it keeps one)."""
        return await asyncio.to_thread(read_version, self.sync, key)

    async def history(self, key: str) -> list[Version]:
        """The sync store's kept versions; ``UsageError`` when it keeps none."""
        if not isinstance(self.sync, Versions):
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

    async def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed."""
        return await asyncio.to_thread(self.sync.delete, key, expected)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key starting with ``prefix``, listed on a thread when iteration starts."""
        found = await asyncio.to_thread(lambda: list(self.sync.keys(prefix)))
        for key in found:
            yield key

    async def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        """Write our session record, alive for ``ttl`` seconds of the store's time."""
        await asyncio.to_thread(self.sync.put_session, session_id, ttl, info)

    async def get_session(self, session_id: str) -> SessionView:
        """What the store knows of a session's lease."""
        return await asyncio.to_thread(self.sync.get_session, session_id)

    async def drop_session(self, session_id: str) -> None:
        """Remove a session record; absent is fine."""
        await asyncio.to_thread(self.sync.drop_session, session_id)

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
