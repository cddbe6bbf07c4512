"""``FaultyStore``: wrap any store and make its round trips slow or fail on purpose.

Used by tests and simulations to check that callers survive what real networks and
databases do: latency, refused calls, throttling, and the worst case of all, a write
that committed although its reply never arrived.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sessionlocker.core.protocol import LeaseView, Transform, Updated, Versioned
from sessionlocker.errors import StoreError, Throttled
from sessionlocker.stores._checks import check_rate, check_seconds
from sessionlocker.stores.base import Store, cas_update

__all__ = ["FAULT_KINDS", "FaultyStore"]

T = TypeVar("T")
R = TypeVar("R")

#: The kinds counted in ``FaultyStore.faults``.
FAULT_KINDS = ("latency", "fail", "throttle", "unknown")


class FaultyStore:
    """A store that forwards every call to ``inner``, injecting faults on the way.

    For each round trip, in this order:

    - ``latency``: sleep this many seconds (through ``sleep``) before the call;
    - ``fail_rate``: the call fails before reaching ``inner``: ``StoreError``
      (retryable), nothing changed;
    - ``throttle_rate``: the call is refused with ``Throttled(retry_after=...)``,
      nothing changed;
    - ``unknown_rate`` (calls that change the store: ``write``, ``delete``,
      ``put_lease``, ``drop_lease``): the call reaches ``inner`` and succeeds, then
      its reply is lost: ``StoreError(retryable=True, unknown_outcome=True)``. When
      ``inner`` itself raises (``Conflict`` included), that error is passed on as is.

    ``update`` is the generic ``cas_update`` over this store's own ``read`` and
    ``write``, so every read and write inside an update meets its own faults.
    ``close`` always passes straight through.

    One ``random.Random(seed)`` makes every choice, behind a lock, so a given seed
    gives the same faults in the same order of calls. ``faults`` counts what was
    injected, by kind (see ``FAULT_KINDS``).
    """

    def __init__(
        self,
        inner: Store,
        *,
        fail_rate: float = 0.0,
        latency: float = 0.0,
        throttle_rate: float = 0.0,
        retry_after: float = 0.05,
        unknown_rate: float = 0.0,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.fail_rate = check_rate(fail_rate, "fail_rate")
        self.throttle_rate = check_rate(throttle_rate, "throttle_rate")
        self.unknown_rate = check_rate(unknown_rate, "unknown_rate")
        self.latency = check_seconds(latency, "latency")
        self.retry_after = check_seconds(retry_after, "retry_after")
        self.faults: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self._sleep = sleep
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FaultyStore({self.inner!r}, fail_rate={self.fail_rate}, latency={self.latency}, "
            f"throttle_rate={self.throttle_rate}, unknown_rate={self.unknown_rate})"
        )

    def _draw(self, rate: float) -> bool:
        # Called with the lock held. A rate of 0 never fires, a rate of 1 always does.
        return self._random.random() < rate

    def _count(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def _call(self, operation: str, call: Callable[[], R], *, changes: bool = False) -> R:
        """One round trip to ``inner``, with the faults drawn for it."""
        with self._lock:
            fail = self._draw(self.fail_rate)
            throttle = self._draw(self.throttle_rate)
            lose_reply = changes and self._draw(self.unknown_rate)
        if self.latency > 0:
            self._count("latency")
            self._sleep(self.latency)
        if fail:
            self._count("fail")
            raise StoreError(f"injected failure: {operation} did not reach the store")
        if throttle:
            self._count("throttle")
            raise Throttled(
                f"injected throttling: {operation} was refused", retry_after=self.retry_after
            )
        result = call()
        if lose_reply:
            self._count("unknown")
            raise StoreError(
                f"injected lost reply: {operation} was done but its reply was lost",
                retryable=True,
                unknown_outcome=True,
            )
        return result

    # Records.

    def read(self, key: str) -> Versioned | None:
        """``inner.read`` with faults."""
        return self._call("read", lambda: self.inner.read(key))

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """``inner.write`` with faults, including a lost reply after the write."""
        return self._call(
            "write", lambda: self.inner.write(key, value, expected, notify=notify), changes=True
        )

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """``cas_update`` over this store, so each read and write meets its own faults."""
        return cas_update(self, key, transform, known)

    def delete(self, key: str, expected: int | None = None) -> bool:
        """``inner.delete`` with faults, including a lost reply after the delete."""
        return self._call("delete", lambda: self.inner.delete(key, expected), changes=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """``inner.keys`` with faults (one round trip for the whole listing)."""
        return self._call("keys", lambda: self.inner.keys(prefix))

    # Sessions.

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """``inner.put_lease`` with faults."""
        self._call("put_lease", lambda: self.inner.put_lease(lease_id, ttl, info), changes=True)

    def get_lease(self, lease_id: str) -> LeaseView:
        """``inner.get_lease`` with faults."""
        return self._call("get_lease", lambda: self.inner.get_lease(lease_id))

    def drop_lease(self, lease_id: str) -> None:
        """``inner.drop_lease`` with faults."""
        self._call("drop_lease", lambda: self.inner.drop_lease(lease_id), changes=True)

    def close(self) -> None:
        """Close ``inner``; never faulty."""
        self.inner.close()
