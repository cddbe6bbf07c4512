"""A synchronous face for an async store, so the sync store suites can run against it.

``LoopThread`` is one event loop running in a thread of its own; ``BlockingStore`` is a
``Store`` whose every call runs the async store's coroutine on that loop and waits for
it. Calls may come from several threads at once (they interleave on the loop), which
the conformance suite's concurrency test relies on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

from sessionlocker.core.protocol import SessionView, Transform, Updated, Versioned
from sessionlocker.stores.async_base import AsyncStore
from sessionlocker.stores.base import Wake, Watch

T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread, until ``stop()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coroutine`` on the loop; its result or its exception, here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop and its thread, and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class BlockingStore:
    """A ``Store`` (``Notifying`` when ``inner`` has ``watch``) over the async ``inner``."""

    def __init__(self, inner: AsyncStore, loop: LoopThread) -> None:
        self.inner = inner
        self._loop = loop

    def _run(self, awaitable: Awaitable[T]) -> T:
        return self._loop.run(_await(awaitable))

    def read(self, key: str) -> Versioned | None:
        return self._run(self.inner.read(key))

    def write(self, key: str, value: bytes, expected: int | None) -> int:
        return self._run(self.inner.write(key, value, expected))

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        return self._run(self.inner.update(key, transform, known))

    def delete(self, key: str, expected: int | None = None) -> bool:
        return self._run(self.inner.delete(key, expected))

    def keys(self, prefix: str = "") -> Iterator[str]:
        async def listed() -> list[str]:
            return [key async for key in self.inner.keys(prefix)]

        return iter(self._loop.run(listed()))

    def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        self._run(self.inner.put_session(session_id, ttl, info))

    def get_session(self, session_id: str) -> SessionView:
        return self._run(self.inner.get_session(session_id))

    def drop_session(self, session_id: str) -> None:
        self._run(self.inner.drop_session(session_id))

    def watch(self, wake: Wake) -> Watch:
        watch: Watch = getattr(self.inner, "watch")(wake)  # noqa: B009 (only some stores)
        return watch

    def close(self) -> None:
        self._run(self.inner.aclose())
