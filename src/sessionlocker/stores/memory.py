"""``MemoryStore``: the reference implementation of the ``Store`` protocol.

Everything lives in dictionaries in this process, guarded by one lock, so it is safe to
share between threads but not between processes. Use it in tests, in simulations (with
an injected clock) and as the yardstick other backends are compared with. It is also
``Notifying``: a watch is woken synchronously, in the writer's thread, after each write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sessionlocker.core.protocol import Keep, LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.errors import Conflict, UsageError
from sessionlocker.stores._checks import (
    check_expected,
    check_key,
    check_lease_id,
    check_prefix,
    check_ttl,
    check_value,
    closed_error,
)
from sessionlocker.stores.base import Entry, Outcome, Wake

__all__ = ["MemoryStore"]

T = TypeVar("T")

log = logging.getLogger("sessionlocker.stores.memory")


@dataclass(frozen=True, slots=True)
class _Session:
    expires: float
    version: int
    ttl: float
    info: bytes


class MemoryStore:
    """Records and sessions in memory, behind one ``threading.Lock``.

    Revisions come from one counter for the whole store, so they only grow, across
    keys and across a delete and re-create: a revision is never handed out twice.
    Session versions come from a second store-wide counter for the same reason: a
    dropped and re-created session never shows a version a watcher saw before.

    ``clock`` is the store's own clock for session expiry (seconds, only differences
    matter). Inject a fake one to test expiry without waiting. ``history`` keeps that
    many versions of each key (default 0: none; off so simulations and benchmarks
    pay nothing for it), as SQLite and PostgreSQL do (they keep 10). ``wall`` (epoch
    seconds) dates each write (``read_entry``, ``history``).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        history: int = 0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise UsageError(f"history must be a whole number >= 0, not {history!r}")
        self._clock = clock
        self._wall = wall
        self._history_depth = history
        self._history: dict[str, list[Entry]] = {}
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()
        self._records: dict[str, Versioned] = {}
        self._sessions: dict[str, _Session] = {}
        self._revision = 0
        self._session_version = 0
        self._watches: set[_MemoryWatch] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore(records={len(self._records)}, closed={self._closed})"

    # Helpers below expect the lock to be held.

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()

    def _wakes_locked(self, key: str) -> list[Wake]:
        return [watch.wake for watch in self._watches if key in watch.keys]

    @staticmethod
    def _call(wakes: list[Wake], key: str, revision: int | None) -> None:
        """Wake the watchers of ``key``, after the lock is let go (they may call us)."""
        for wake in wakes:
            try:
                wake(key, revision)
            except Exception:  # the write is committed; a broken callback must not undo that
                log.exception("key=%s the wake callback failed", key, extra={"key": key})

    def _write_locked(self, key: str, value: bytes, expected: int | None) -> int:
        current = self._records.get(key)
        found = current.revision if current is not None else None
        if found != expected:
            raise Conflict(key, current)
        self._revision += 1
        self._records[key] = Versioned(value, self._revision)
        written = self._written[key] = self._wall()
        if self._history_depth:
            kept = self._history.setdefault(key, [])
            kept.insert(0, Entry(value, self._revision, written))
            del kept[self._history_depth :]
        return self._revision

    # Records.

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        key = check_key(key)
        with self._lock:
            self._check_open()
            return self._records.get(key)

    def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the ``wall`` time of that write."""
        key = check_key(key)
        with self._lock:
            self._check_open()
            current = self._records.get(key)
            if current is None:
                return None
            return Entry(current.value, current.revision, self._written.get(key))

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Write if the stored revision is ``expected`` (``None``: the key must be absent).

        Returns the new revision; raises ``Conflict`` carrying what is stored now.
        Watchers are woken unless not ``notify``.
        """
        key = check_key(key)
        value = check_value(value)
        expected = check_expected(expected)
        with self._lock:
            self._check_open()
            revision = self._write_locked(key, value, expected)
            wakes = self._wakes_locked(key) if notify else []
        self._call(wakes, key, revision)
        return revision

    @property
    def history_depth(self) -> int:
        """How many versions of each key ``history`` keeps (0: history is off)."""
        return self._history_depth

    def history(self, key: str) -> list[Entry]:
        """The last ``history_depth`` versions written to ``key``, newest first.

        The first is the current value unless the key was deleted since (the history
        outlives a delete).
        """
        key = check_key(key)
        with self._lock:
            self._check_open()
            return list(self._history.get(key, ()))

    def forget(self, key: str) -> int:
        """Drop every history entry of ``key`` (an erasure); how many were dropped."""
        key = check_key(key)
        with self._lock:
            self._check_open()
            return len(self._history.pop(key, ()))

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """The same steps as ``cas_update``, done in one go under the store's lock.

        With ``known`` the transform first runs on it; if ``known`` turns out stale the
        transform runs again on what is stored, and the outcome of that last run is
        reported. A ``Keep`` on the first run returns at once with ``known`` as
        ``current`` (exactly as ``cas_update`` does). The transform runs under the lock,
        so it must be pure and must never call the store.
        """
        key = check_key(key)
        with self._lock:
            self._check_open()
            updated, wakes = self._update_locked(key, transform, known)
        if updated.wrote and updated.current is not None:
            self._call(wakes, key, updated.current.revision)
        return updated

    def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """Every update as ``update`` runs it, all in one hold of the store's lock; an
        update's error is its result alone (``Batching``)."""
        results: list[Outcome] = []
        woken: list[tuple[list[Wake], str, int]] = []
        with self._lock:
            self._check_open()
            for update in updates:
                try:
                    key = check_key(update.key)
                    updated, wakes = self._update_locked(key, update.transform, update.known)
                except Exception as exc:  # this update's own error
                    results.append(exc)
                    continue
                results.append(updated)
                if updated.wrote and updated.current is not None:
                    woken.append((wakes, key, updated.current.revision))
        for wakes, key, revision in woken:
            self._call(wakes, key, revision)
        return results

    def _update_locked(
        self, key: str, transform: Transform[T], known: Versioned | None
    ) -> tuple[Updated[T], list[Wake]]:
        current = known if known is not None else self._records.get(key)
        while True:
            decision = transform(current)
            if isinstance(decision, Keep):
                return Updated(decision.outcome, current, wrote=False), []
            value = check_value(decision.value, "the value a transform puts")
            expected = current.revision if current is not None else None
            try:
                revision = self._write_locked(key, value, expected)
            except Conflict as conflict:
                current = conflict.current
                continue
            wakes = [] if decision.quiet else self._wakes_locked(key)
            return Updated(decision.outcome, Versioned(value, revision), wrote=True), wakes

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key``; True if it existed.

        With ``expected`` the key is removed only at that revision: another revision
        raises ``Conflict`` carrying what is stored. An absent key returns False.
        """
        key = check_key(key)
        expected = check_expected(expected)
        with self._lock:
            self._check_open()
            current = self._records.get(key)
            if current is None:
                return False
            if expected is not None and current.revision != expected:
                raise Conflict(key, current)
            del self._records[key]
            del self._written[key]
            wakes = self._wakes_locked(key)
        self._call(wakes, key, None)
        return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, as a snapshot taken now."""
        prefix = check_prefix(prefix)
        with self._lock:
            self._check_open()
            found = [key for key in self._records if key.startswith(prefix)]
        return iter(found)

    # Sessions.

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of this store's clock."""
        lease_id = check_lease_id(lease_id)
        ttl = check_ttl(ttl)
        info = check_value(info, "session info")
        with self._lock:
            self._check_open()
            self._session_version += 1
            expires = self._clock() + ttl
            self._sessions[lease_id] = _Session(expires, self._session_version, ttl, info)

    def get_lease(self, lease_id: str) -> LeaseView:
        """What the store knows of a session; expired when its clock reached the expiry."""
        lease_id = check_lease_id(lease_id)
        with self._lock:
            self._check_open()
            session = self._sessions.get(lease_id)
            if session is None:
                return LeaseView(exists=False, expired=True, version=0, ttl=None)
            expired = self._clock() >= session.expires
            return LeaseView(exists=True, expired=expired, version=session.version, ttl=session.ttl)

    def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record; absent is fine."""
        lease_id = check_lease_id(lease_id)
        with self._lock:
            self._check_open()
            self._sessions.pop(lease_id, None)

    # Notifications.

    def watch(self, wake: Wake) -> _MemoryWatch:
        """A new watch: ``wake(key, revision)`` runs in the writer's thread after each write."""
        if not callable(wake):
            raise UsageError(f"wake must be callable, not {type(wake).__name__}")
        with self._lock:
            self._check_open()
            made = _MemoryWatch(self, wake)
            self._watches.add(made)
        return made

    def close(self) -> None:
        """Mark the store closed; every later call raises ``StoreError``. Idempotent."""
        with self._lock:
            self._closed = True
            self._watches.clear()


class _MemoryWatch:
    """The ``Watch`` of a ``MemoryStore``: a set of keys, read under the store's lock."""

    def __init__(self, store: MemoryStore, wake: Wake) -> None:
        self._store = store
        self.wake = wake
        self.keys: set[str] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemoryStore watch keys={len(self.keys)} closed={self._closed}>"

    def add(self, key: str) -> None:
        """Wake for writes to ``key`` from now on."""
        key = check_key(key)
        with self._store._lock:
            if self._closed:
                raise UsageError("this watch is closed")
            self.keys.add(key)

    def discard(self, key: str) -> None:
        """Stop waking for ``key``; absent is fine."""
        with self._store._lock:
            self.keys.discard(key)

    def close(self) -> None:
        """Stop all wake-ups. Idempotent."""
        with self._store._lock:
            self._closed = True
            self.keys.clear()
            self._store._watches.discard(self)
