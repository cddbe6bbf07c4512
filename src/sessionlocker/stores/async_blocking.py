"""``blocking(store, loop)``: an ``AsyncStore`` seen as a ``Store``, from other threads.

Each call runs the async store's coroutine on ``loop`` and waits for its result, so
code written for a sync store (the frame-loop driver's blocking paths, the sync test
suites) can use an async store that lives on an event loop. Calling it from that loop's
own thread would wait on itself forever, so that raises ``UsageError`` instead.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from sessionlocker.core.protocol import SessionView, Transform, Updated, Versioned
from sessionlocker.errors import UsageError
from sessionlocker.stores.async_base import AsyncDated, AsyncStore
from sessionlocker.stores.base import Notifying, Version, Wake, Watch

__all__ = ["BlockingStore", "NotifyingBlockingStore", "blocking"]

T = TypeVar("T")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


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

    def _run(self, awaitable: Awaitable[T]) -> T:
        loop = self._loop
        problem = None
        if loop is None:
            problem = "this store is not bound to an event loop yet"
        elif threading.get_ident() == self._loop_thread:
            problem = "a blocking call on the event loop's own thread: await it instead"
        if problem is not None or loop is None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: nothing to warn about
            raise UsageError(problem)
        return asyncio.run_coroutine_threadsafe(_await(awaitable), loop).result()

    def read(self, key: str) -> Versioned | None:
        """``inner.read``, waited for."""
        return self._run(self.inner.read(key))

    def read_version(self, key: str) -> Version | None:
        """``read`` with the store's write time, when the async store keeps one."""
        if isinstance(self.inner, AsyncDated):
            return self._run(self.inner.read_version(key))
        current = self.read(key)
        return None if current is None else Version(current.value, current.revision)

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """``inner.write``, waited for."""
        return self._run(self.inner.write(key, value, expected, notify=notify))

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``inner.update``, waited for."""
        return self._run(self.inner.update(key, transform, known))

    def delete(self, key: str, expected: int | None = None) -> bool:
        """``inner.delete``, waited for."""
        return self._run(self.inner.delete(key, expected))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """``inner.keys``, gathered now."""

        async def listed() -> list[str]:
            return [key async for key in self.inner.keys(prefix)]

        return iter(self._run(listed()))

    def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        """``inner.put_session``, waited for."""
        self._run(self.inner.put_session(session_id, ttl, info))

    def get_session(self, session_id: str) -> SessionView:
        """``inner.get_session``, waited for."""
        return self._run(self.inner.get_session(session_id))

    def drop_session(self, session_id: str) -> None:
        """``inner.drop_session``, waited for."""
        self._run(self.inner.drop_session(session_id))

    def close(self) -> None:
        """``inner.aclose``, waited for."""
        self._run(self.inner.aclose())


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
