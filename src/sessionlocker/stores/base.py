"""The store protocols, sync and async side by side: bytes and revisions, nothing more.

A store keeps, per key, some bytes and a revision that only grows (also across a
delete and re-create, so an old revision never names new bytes). Every write is
conditional on the revision the writer expects. Beside the records a store keeps small
*lease* records, one per live service, judged alive or expired by the store's own clock
where it has one.

Backends raise ``Conflict`` for a moved revision and translate every other failure of
their client library into ``StoreError`` (retryable or not, outcome known or not).

``AsyncStore`` keeps exactly what a ``Store`` keeps with the same guarantees and errors;
only the calls are awaited. The decisions are shared, not copied: ``async_cas_update``
runs ``cas_decide``, as ``cas_update`` does, and each native backend (``redis``,
``postgresql``) sends the same scripts or SQL from its sync and its async store and reads
the replies with the same functions. Notifications stay synchronous on purpose: an async
store that notifies has the sync ``watch(wake) -> Watch`` of ``Notifying`` (a wake may
come from any thread; the drivers already handle that), so ``isinstance(store,
Notifying)`` works for both kinds.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from sessionlocker.core.protocol import Keep, LeaseView, Transform, Update, Updated, Versioned
from sessionlocker.errors import Conflict
from sessionlocker.stores._checks import check_value

__all__ = [
    "AsyncBatching",
    "AsyncDated",
    "AsyncKeepsHistory",
    "AsyncStore",
    "Attempt",
    "Batching",
    "Dated",
    "Entry",
    "KeepsHistory",
    "Notifying",
    "Store",
    "UserIndex",
    "Wake",
    "Watch",
    "async_cas_update",
    "async_update_many",
    "batches",
    "cas_decide",
    "cas_update",
    "is_async",
    "read_entry",
    "update_many",
]

#: One result of ``update_many``: the update's ``Updated``, or the error it alone met.
Outcome = Updated[Any] | Exception


T = TypeVar("T")


@runtime_checkable
class Store(Protocol):
    """What every backend offers. The memory store is the reference implementation."""

    def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        ...

    def write(self, key: str, value: bytes, expected: int | None, *, notify: bool = True) -> int:
        """Write if the stored revision is ``expected`` (``None``: key must be absent).

        Returns the new revision; raises ``Conflict`` carrying what is stored now.
        ``notify=False`` spares a ``Notifying`` store telling its watchers (a ``quiet``
        ``Put``); other stores ignore it.
        """
        ...

    def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """Read (or start from ``known``), transform, write conditionally; retry on conflict."""
        ...

    def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in no promised order."""
        ...

    def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of the store's time."""
        ...

    def get_lease(self, lease_id: str) -> LeaseView:
        """What the store knows of a session's lease."""
        ...

    def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record (a clean close); absent is fine."""
        ...

    def close(self) -> None:
        """Release connections and files. Using the store afterwards is an error."""
        ...


class Wake(Protocol):
    """``wake(key, revision)``: ``key`` was written; ``revision`` is the one the write
    made, or ``None`` when not known (a delete, a reconnect, a store that does not say).
    """

    def __call__(self, key: str, revision: int | None = None, /) -> None: ...


class Watch(Protocol):
    """A set of keys whose writes wake someone (see ``Notifying``)."""

    def add(self, key: str) -> None:
        """Start waking for writes to ``key`` (a store key, as passed to ``update``)."""
        ...

    def discard(self, key: str) -> None:
        """Stop waking for ``key``; absent is fine."""
        ...

    def close(self) -> None:
        """Stop all wake-ups and release what the watch holds (a connection, a thread)."""
        ...


@runtime_checkable
class Notifying(Protocol):
    """A store that tells at once when a record changed (optional; others are polled).

    ``wake(key, revision)`` is called, from any thread and without blocking it for
    long, soon after each committed write or delete of a watched key by anyone, this
    process included (the revision lets a writer ignore the wake-up of its own write),
    except a write made with ``notify=False`` (a ``quiet`` ``Put``: a holder's save that
    keeps its lock, which no one waits for).
    A wake-up is only a hint: it may come twice, late or for a write already seen, and
    one may be lost; after a lost connection is made again the watch calls ``wake`` for
    every watched key, since notifications sent meanwhile were missed.
    """

    def watch(self, wake: Wake) -> Watch:
        """A new, empty watch calling ``wake``."""
        ...


@dataclass(frozen=True, slots=True)
class Attempt(Generic[T]):
    """The write a transform decided on: ``value`` if the revision is still ``expected``
    (``notify``: tell the store's watchers, unless the ``Put`` was ``quiet``)."""

    value: bytes
    expected: int | None
    outcome: T
    notify: bool = True

    def written(self, revision: int) -> Updated[T]:
        """The result once the write committed at ``revision``."""
        return Updated(self.outcome, Versioned(self.value, revision), wrote=True)


def cas_decide(transform: Transform[T], current: Versioned | None) -> Updated[T] | Attempt[T]:
    """One round of a compare-and-set update, without I/O: the transform's decision on
    ``current``, as a finished ``Updated`` (it keeps) or the ``Attempt`` to write.

    Shared by ``cas_update`` and its async twin, so both decide exactly alike.
    """
    decision = transform(current)
    if isinstance(decision, Keep):
        return Updated(decision.outcome, current, wrote=False)
    value = check_value(decision.value, "the value a transform puts")
    expected = current.revision if current is not None else None
    return Attempt(value, expected, decision.outcome, notify=not decision.quiet)


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry of a record's history: stored bytes, their revision, and when the store
    wrote them. The record's current value is its newest entry (``read_entry``).

    ``written`` is the store's own wall-clock time of the write, in seconds since the
    Unix epoch (the server's clock on Redis and PostgreSQL, the host's on SQLite and
    memory), or ``None`` when the store did not record it (an entry kept before write
    times were, or a store that keeps none).
    """

    value: bytes
    revision: int
    written: float | None = None


@runtime_checkable
class KeepsHistory(Protocol):
    """A store that keeps a history of each key: its last entries (optional).

    SQLite and PostgreSQL keep 10 by default, Redis and memory none unless asked
    (``history=N``). Each committed write adds an entry, with the store's time of
    the write; a conflict adds none; a delete removes none, so the history is also the
    way back from a mistaken delete.
    """

    def history(self, key: str) -> list[Entry]:
        """The history entries of ``key``, newest first (empty when none or history is off)."""
        ...

    def forget(self, key: str) -> int:
        """Drop every history entry of ``key`` (an erasure); returns how many were dropped."""
        ...


@runtime_checkable
class Dated(Protocol):
    """A store that knows when each record was last written (optional; every built-in
    store is, and ``read_entry`` falls back to ``written=None`` for others)."""

    def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the store's time of that write."""
        ...


def read_entry(store: Store, key: str) -> Entry | None:
    """The record at ``key`` with its write time when ``store`` knows it (``Dated``)."""
    if isinstance(store, Dated):
        return store.read_entry(key)
    current = store.read(key)
    return None if current is None else Entry(current.value, current.revision)


@runtime_checkable
class UserIndex(Protocol):
    """A store that indexes records by the user ids in them (optional; others are scanned).

    The index is built from the stored bytes themselves: a record's top-level
    ``"user_ids"`` list of strings, as ``core.record`` writes it (compact JSON). A value
    that is not such a record is written as usual and simply not indexed. The index
    changes in the same atomic step as the write or delete, so it is never behind what
    is stored. SQLite (a trigger), PostgreSQL (a GIN expression index) and Redis (a set
    per user kept by the write script) have one; memory does not.
    """

    def keys_for_user(self, user_id: str, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix`` whose record lists ``user_id``, sorted."""
        ...


def cas_update(
    store: Store, key: str, transform: Transform[T], known: Versioned | None = None
) -> Updated[T]:
    """The generic update on top of ``read`` and ``write``.

    With ``known``, the first attempt is one conditional write (no read). On
    ``Conflict`` the transform runs again on what the conflict reported as stored, so
    each retry costs one round trip too. The loop ends because every conflict means
    another writer made progress.
    """
    current = known if known is not None else store.read(key)
    while True:
        step = cas_decide(transform, current)
        if isinstance(step, Updated):
            return step
        try:
            revision = store.write(key, step.value, step.expected, notify=step.notify)
            return step.written(revision)
        except Conflict as conflict:
            current = conflict.current


@runtime_checkable
class AsyncStore(Protocol):
    """What every async backend offers; each call means what the ``Store`` call means."""

    async def read(self, key: str) -> Versioned | None:
        """The bytes and revision stored at ``key``, or ``None`` when absent."""
        ...

    async def write(
        self, key: str, value: bytes, expected: int | None, *, notify: bool = True
    ) -> int:
        """Write if the stored revision is ``expected``; ``Conflict`` carries what is stored."""
        ...

    async def update(
        self, key: str, transform: Transform[T], known: Versioned | None = None
    ) -> Updated[T]:
        """Read (or start from ``known``), transform, write conditionally; retry on conflict."""
        ...

    async def delete(self, key: str, expected: int | None = None) -> bool:
        """Remove ``key`` (only at revision ``expected`` when given); True if it existed."""
        ...

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key starting with ``prefix``, in no promised order (``async for``)."""
        ...

    async def put_lease(self, lease_id: str, ttl: float, info: bytes) -> None:
        """Write our lease, alive for ``ttl`` seconds of the store's time."""
        ...

    async def get_lease(self, lease_id: str) -> LeaseView:
        """What the store knows of a session's lease."""
        ...

    async def drop_lease(self, lease_id: str) -> None:
        """Remove a lease record (a clean close); absent is fine."""
        ...

    async def aclose(self) -> None:
        """Release connections and files. Using the store afterwards is an error."""
        ...


@runtime_checkable
class AsyncDated(Protocol):
    """``Dated`` for an async store: the record with the store's time of its write."""

    async def read_entry(self, key: str) -> Entry | None:
        """What ``read`` returns, with the store's time of that write."""
        ...


@runtime_checkable
class AsyncKeepsHistory(Protocol):
    """``KeepsHistory`` for an async store (reading only)."""

    async def history(self, key: str) -> list[Entry]:
        """The history entries of ``key``, newest first, each with its write time."""
        ...


async def async_cas_update(
    store: AsyncStore, key: str, transform: Transform[T], known: Versioned | None = None
) -> Updated[T]:
    """``cas_update`` awaited: the same decisions (``cas_decide``), the same round trips."""
    current = known if known is not None else await store.read(key)
    while True:
        step = cas_decide(transform, current)
        if isinstance(step, Updated):
            return step
        try:
            revision = await store.write(key, step.value, step.expected, notify=step.notify)
            return step.written(revision)
        except Conflict as conflict:
            current = conflict.current


@runtime_checkable
class Batching(Protocol):
    """A store that sends many updates together (one pipeline, one transaction).

    ``update_many(updates)`` returns one result per update, in order: its ``Updated``,
    or the exception it alone met (``StoreError``, or what its transform raised). Each
    update keeps its own conditional write and its own conflict retries, exactly as
    ``update`` would run it; a conflict or a failure of one never changes another's
    result. Only a failure of the whole (the connection breaking) fails several, each
    reported as that failure.
    """

    def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """Run every update; one result per update, in order."""
        ...


@runtime_checkable
class AsyncBatching(Protocol):
    """``Batching`` for an async store."""

    async def update_many(self, updates: Sequence[Update[Any]]) -> list[Outcome]:
        """Run every update; one result per update, in order."""
        ...


def is_async(store: object) -> bool:
    """Whether ``store``'s calls are awaited: an ``AsyncStore`` that is not also a sync
    ``Store`` (anything else, a partial test double included, is called).

    Decided once per class (a protocol check walks every member: ~60 µs, and the
    drivers ask on every store call); an object whose methods are its own attributes
    rather than its class's is checked each time.
    """
    kind = type(store)
    found = _ASYNC_CLASSES.get(kind)
    if found is None:
        found = isinstance(store, AsyncStore) and not isinstance(store, Store)
        if _MEMBERS.isdisjoint(getattr(store, "__dict__", ())):
            _ASYNC_CLASSES[kind] = found
    return found


#: ``is_async`` of each class seen (a few per process).
_ASYNC_CLASSES: dict[type, bool] = {}
#: The members the two protocols check.
_MEMBERS = frozenset(
    name for protocol in (Store, AsyncStore) for name in vars(protocol) if not name.startswith("_")
)


def batches(store: Store | AsyncStore) -> bool:
    """Whether ``store`` sends many updates together (a wrapper such as the threaded
    async store batches only when the store it wraps does: its ``sends_batches``)."""
    if not isinstance(store, Batching | AsyncBatching):
        return False
    return bool(getattr(store, "sends_batches", True))


def update_many(store: Store, updates: Sequence[Update[Any]]) -> list[Outcome]:
    """``store.update_many`` where the store batches; else each update in turn."""
    if isinstance(store, Batching):
        return store.update_many(updates)
    results: list[Outcome] = []
    for update in updates:
        try:
            results.append(store.update(update.key, update.transform, update.known))
        except Exception as exc:  # this update's failure only
            results.append(exc)
    return results


async def async_update_many(store: AsyncStore, updates: Sequence[Update[Any]]) -> list[Outcome]:
    """``update_many`` awaited on an async store."""
    if isinstance(store, AsyncBatching):
        return await store.update_many(updates)
    results: list[Outcome] = []
    for update in updates:
        try:
            results.append(await store.update(update.key, update.transform, update.known))
        except Exception as exc:  # this update's failure only
            results.append(exc)
    return results


#: Old names of ``Entry`` and ``KeepsHistory`` (issue 16: "version" now means only the
#: data's schema version), still importable with a ``DeprecationWarning``.
_RENAMED = {"Version": "Entry", "Versions": "KeepsHistory", "AsyncVersions": "AsyncKeepsHistory"}


def __getattr__(name: str) -> object:
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{name} is deprecated: use {new}", DeprecationWarning, stacklevel=2)
    return globals()[new]
