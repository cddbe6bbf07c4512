"""``ReadOnlyStore``: read a real store, keep every write in this process only.

For staging servers and for trying a migration on production data safely
(SessionLocker's ReadOnlyDataStores): loads, migrations and saves run through the same
transforms as always, and their writes land in a local overlay that later reads see,
but nothing is ever written to the store underneath. Our own leases live in
the overlay too (a read-only service never announces itself to the real fleet); other
sessions' leases are read from the real store, so waiting behaves as it would live.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TypeVar

from sessionlocker.core.protocol import LeaseView, Transform, Updated, Versioned
from sessionlocker.errors import Conflict
from sessionlocker.stores._checks import check_expected, check_key, check_prefix, check_value
from sessionlocker.stores.base import Entry, Store, cas_update, read_entry
from sessionlocker.stores.memory import MemoryStore

__all__ = ["ReadOnlyStore"]

T = TypeVar("T")


class ReadOnlyStore:
    """Wraps ``inner``; reads fall through to it until this process wrote the key.

    ``close()`` closes ``inner`` too: the wrapper takes ownership of it.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._lock = threading.RLock()
        self._overlay: dict[str, Versioned | None] = {}
        self._sessions = MemoryStore()
        self._revision = 0

    def read(self, key: str) -> Versioned | None:
        key = check_key(key)
        with self._lock:
            if key in self._overlay:
                return self._overlay[key]
        return self.inner.read(key)

    def read_entry(self, key: str) -> Entry | None:
        """``read`` with the write time: the inner store's, ``None`` for our own writes."""
        key = check_key(key)
        with self._lock:
            if key in self._overlay:
                mine = self._overlay[key]
                return None if mine is None else Entry(mine.value, mine.revision)
        return read_entry(self.inner, key)

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Write to the overlay only (nothing is stored, so nothing to notify)."""
        key, value, expected = check_key(key), check_value(value), check_expected(expected)
        with self._lock:
            current = self.read(key)
            if (current.revision if current is not None else None) != expected:
                raise Conflict(key, current)
            self._revision = max(self._revision, current.revision if current else 0) + 1
            self._overlay[key] = Versioned(value, self._revision)
            return self._revision

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        return cas_update(self, key, transform, known)

    def delete(self, key: str, expected: int | None = None) -> bool:
        key, expected = check_key(key), check_expected(expected)
        with self._lock:
            current = self.read(key)
            if current is None:
                return False
            if expected is not None and current.revision != expected:
                raise Conflict(key, current)
            self._overlay[key] = None
            return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        prefix = check_prefix(prefix)
        with self._lock:
            overlay = dict(self._overlay)
        below = {key for key in self.inner.keys(prefix) if overlay.get(key, True) is not None}
        mine = {
            key for key, value in overlay.items() if value is not None and key.startswith(prefix)
        }
        return iter(sorted(below | mine))

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        self._sessions.put_lease(lease_id, ttl, info)

    def get_lease(self, lease_id: str) -> LeaseView:
        mine = self._sessions.get_lease(lease_id)
        return mine if mine.exists else self.inner.get_lease(lease_id)

    def drop_lease(self, lease_id: str) -> None:
        self._sessions.drop_lease(lease_id)

    def close(self) -> None:
        self._sessions.close()
        self.inner.close()
