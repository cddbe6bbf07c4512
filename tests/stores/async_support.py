"""An event loop in a thread, for running async stores behind ``BlockingStore``.

``LoopThread`` is one event loop running in a thread of its own; ``blocking(store,
loop)`` (``sessionlocker.stores._bridges``) is a ``Store`` whose every call runs
the async store's coroutine on that loop and waits for it. Calls may come from several
threads at once (they interleave on the loop), which the conformance suite's
concurrency test relies on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sessionlocker.stores._bridges import BlockingStore, blocking
from sessionlocker.stores.base import AsyncStore

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

    def store(self, inner: AsyncStore) -> BlockingStore:
        """``inner`` as a ``Store`` running on this loop."""
        return blocking(inner, self.loop)

    def stop(self) -> None:
        """Stop the loop and its thread, and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
