"""``CountingStore``: wrap any store and count its round trips, by kind.

Every call is passed through unchanged; the wrapper only counts it. One call of the
``Store`` protocol is one request to the backend (SQLite: one transaction; Redis and
PostgreSQL: one script or statement where the backend does ``update`` natively), so
the counts say how many requests a lifecycle costs, which is what the benchmarks
report and what the design promises (a load, a save and a release are one each).

Notifications: when the inner store is ``Notifying``, ``CountingStore.wrap`` returns a
wrapper that is ``Notifying`` too (its watches are counted as well), unless told
``notifications=False``: then the wrapper hides them, and a driver falls back to
polling. That is how a benchmark measures a notifying backend both ways.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TypeVar

from sessionlocker.core.protocol import LeaseView, Transform, Updated, Versioned
from sessionlocker.errors import UsageError
from sessionlocker.stores.base import Notifying, Store, Wake, Watch

__all__ = ["KINDS", "CountingNotifyingStore", "CountingStore"]

T = TypeVar("T")

#: The kinds of round trip counted, in the order reports show them.
KINDS = (
    "read",
    "write",
    "update",
    "delete",
    "keys",
    "put_lease",
    "get_lease",
    "drop_lease",
    "watch_add",
    "watch_discard",
)

#: Kinds that touch records (the rest are leases and watches).
RECORD_KINDS = frozenset({"read", "write", "update", "delete", "keys"})


class CountingStore:
    """Forwards every call to ``inner`` and counts it in ``counts`` (see ``KINDS``).

    Thread-safe: drivers call stores from a pool. ``close`` passes through and is not
    counted. Use ``CountingStore.wrap`` to keep (or hide) the inner store's
    notifications.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(KINDS, 0)

    @staticmethod
    def wrap(inner: Store, *, notifications: bool = True) -> CountingStore:
        """A counting wrapper; ``Notifying`` exactly when ``inner`` is and ``notifications``."""
        if notifications and isinstance(inner, Notifying):
            return CountingNotifyingStore(inner)
        return CountingStore(inner)

    def __repr__(self) -> str:
        return f"CountingStore({self.inner!r}, total={self.total()})"

    # ------------------------------------------------------------------ counts

    def count(self, kind: str) -> None:
        """Add one round trip of ``kind``."""
        with self._lock:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        """A copy of the counts so far, every kind included (zero when unused)."""
        with self._lock:
            return dict(self._counts)

    def total(self, *, records_only: bool = False) -> int:
        """All round trips so far, or only those touching records."""
        counts = self.counts()
        return sum(n for kind, n in counts.items() if not records_only or kind in RECORD_KINDS)

    def reset(self) -> dict[str, int]:
        """Start counting from zero again; returns the counts before the reset."""
        with self._lock:
            before, self._counts = self._counts, dict.fromkeys(KINDS, 0)
        return before

    # ------------------------------------------------------------------ the protocol

    def read(self, key: str) -> Versioned | None:
        """Count, then ``inner.read``."""
        self.count("read")
        return self.inner.read(key)

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Count, then ``inner.write``."""
        self.count("write")
        return self.inner.write(key, value, expected, notify=notify)

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """Count, then ``inner.update`` (its own retries, if any, happen inside it)."""
        self.count("update")
        return self.inner.update(key, transform, known)

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Count, then ``inner.delete``."""
        self.count("delete")
        return self.inner.delete(key, expected)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Count, then ``inner.keys``."""
        self.count("keys")
        return self.inner.keys(prefix)

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Count, then ``inner.put_lease``."""
        self.count("put_lease")
        self.inner.put_lease(lease_id, ttl, info)

    def get_lease(self, lease_id: str) -> LeaseView:
        """Count, then ``inner.get_lease``."""
        self.count("get_lease")
        return self.inner.get_lease(lease_id)

    def drop_lease(self, lease_id: str) -> None:
        """Count, then ``inner.drop_lease``."""
        self.count("drop_lease")
        self.inner.drop_lease(lease_id)

    def close(self) -> None:
        """Close ``inner`` (not counted)."""
        self.inner.close()


class CountingNotifyingStore(CountingStore):
    """A ``CountingStore`` over a ``Notifying`` store, itself ``Notifying``."""

    def __init__(self, inner: Store) -> None:
        if not isinstance(inner, Notifying):
            raise UsageError(f"{inner!r} sends no notifications; use CountingStore")
        super().__init__(inner)
        self._notifying: Notifying = inner

    def watch(self, wake: Wake) -> Watch:
        """The inner store's watch, with its ``add`` and ``discard`` counted."""
        return _CountingWatch(self, self._notifying.watch(wake))


class _CountingWatch:
    """Counts ``add`` and ``discard`` of an inner watch (each is a subscribe call)."""

    def __init__(self, store: CountingStore, inner: Watch) -> None:
        self._store = store
        self._inner = inner

    def add(self, key: str) -> None:
        self._store.count("watch_add")
        self._inner.add(key)

    def discard(self, key: str) -> None:
        self._store.count("watch_discard")
        self._inner.discard(key)

    def close(self) -> None:
        self._inner.close()
