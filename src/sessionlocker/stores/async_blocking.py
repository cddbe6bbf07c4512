"""``blocking(store, loop)``: an ``AsyncStore`` seen as a ``Store``, from other threads.

Each call runs the async store's coroutine on ``loop`` and waits for its result, so
code written for a sync store (the frame-loop driver's blocking paths, the sync test
suites) can use an async store that lives on an event loop. Calling it from that loop's
own thread would wait on itself forever, so that raises ``UsageError`` instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar, cast

from sessionlocker.core.protocol import SessionView, Transform, Updated, Versioned
from sessionlocker.errors import StoreError, UsageError
from sessionlocker.stores.async_base import AsyncDated, AsyncStore
from sessionlocker.stores.base import Notifying, Version, Wake, Watch

__all__ = ["BlockingStore", "NotifyingBlockingStore", "blocking"]

T = TypeVar("T")


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

    def read_version(self, key: str) -> Version | None:
        """``read`` with the store's write time, when the async store keeps one."""
        if isinstance(self.inner, AsyncDated):
            inner = self.inner
            return self._run(lambda: inner.read_version(key))
        current = self.read(key)
        return None if current is None else Version(current.value, current.revision)

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

    def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        """``inner.put_session``, waited for."""
        self._run(lambda: self.inner.put_session(session_id, ttl, info))

    def get_session(self, session_id: str) -> SessionView:
        """``inner.get_session``, waited for."""
        return self._run(lambda: self.inner.get_session(session_id))

    def drop_session(self, session_id: str) -> None:
        """``inner.drop_session``, waited for."""
        self._run(lambda: self.inner.drop_session(session_id))

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
