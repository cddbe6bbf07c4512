"""The async store protocol: the ``Store`` protocol with ``async`` methods.

An ``AsyncStore`` keeps exactly what a ``Store`` keeps (bytes, revisions that only grow,
session leases) with the same guarantees and errors; only the calls are awaited. The
decisions are shared, not copied: ``async_cas_update`` runs ``cas_decide`` from
``base``, as ``cas_update`` does, and each native backend (``async_redis``,
``async_postgresql``) sends the same scripts or SQL as its sync twin and reads the replies
with the same functions.

Notifications stay synchronous on purpose: an async store that notifies has the sync
``watch(wake) -> Watch`` of ``Notifying`` (a wake may come from any thread; the drivers
already handle that), so ``isinstance(store, Notifying)`` works for both kinds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeVar, runtime_checkable

from sessionlocker.core.protocol import SessionView, Transform, Updated, Versioned
from sessionlocker.errors import Conflict
from sessionlocker.stores.base import Version, cas_decide

__all__ = ["AsyncDated", "AsyncStore", "AsyncVersions", "async_cas_update"]

T = TypeVar("T")


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

    async def put_session(self, session_id: str, ttl: float, info: bytes) -> None:
        """Write our session record, alive for ``ttl`` seconds of the store's time."""
        ...

    async def get_session(self, session_id: str) -> SessionView:
        """What the store knows of a session's lease."""
        ...

    async def drop_session(self, session_id: str) -> None:
        """Remove a session record (a clean close); absent is fine."""
        ...

    async def aclose(self) -> None:
        """Release connections and files. Using the store afterwards is an error."""
        ...


@runtime_checkable
class AsyncDated(Protocol):
    """``Dated`` for an async store: the record with the store's time of its write."""

    async def read_version(self, key: str) -> Version | None:
        """What ``read`` returns, with the store's time of that write."""
        ...


@runtime_checkable
class AsyncVersions(Protocol):
    """``Versions`` for an async store (reading only)."""

    async def history(self, key: str) -> list[Version]:
        """The kept versions of ``key``, newest first, each with its write time."""
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
