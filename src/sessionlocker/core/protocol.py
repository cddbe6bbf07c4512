"""The values that cross between the core, the drivers and the stores.

The core never calls a store. It returns *requests* (``Update``, ``ReadLease``,
``PutLease``, ``DropLease``); a driver executes each against a store and feeds the
result back. A store deals only in bytes and revisions; what the bytes mean is the
core's business, expressed as a pure ``Transform`` that the store may run several times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "DropLease",
    "Keep",
    "LeaseView",
    "Put",
    "PutLease",
    "ReadLease",
    "Request",
    "Transform",
    "Update",
    "Updated",
    "Versioned",
]

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Versioned:
    """Stored bytes and the store's revision for them.

    Revisions only grow, across deletes too, so an old revision never names new bytes.
    """

    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Put(Generic[T_co]):
    """A transform's decision to write ``value``; ``outcome`` is reported once written.

    ``quiet``: nobody waits for this write, so a store that notifies need not tell its
    watchers (a holder's save that keeps its lock: only a changed lock, a release
    request or a message is worth waking another process for).
    """

    value: bytes
    outcome: T_co
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class Keep(Generic[T_co]):
    """A transform's decision to write nothing; ``outcome`` is reported at once."""

    outcome: T_co


#: A pure function from what is stored (``None``: the key is absent) to a decision.
#: Stores may call it several times (once per conflict), so it must have no effects.
Transform = Callable[[Versioned | None], Put[T_co] | Keep[T_co]]


@dataclass(frozen=True, slots=True)
class Updated(Generic[T_co]):
    """The result of an update: the last outcome, what is stored now, and if we wrote."""

    outcome: T_co
    current: Versioned | None
    wrote: bool


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What a store knows of a session's lease.

    ``expired`` is the store's own judgement by its own clock, or ``None`` when the
    store has no clock: then the caller watches ``version`` stay the same for a full
    ``ttl`` of its own monotonic time. ``exists`` is false when no record is kept
    (never written, dropped on a clean close, or expired and removed by the store).
    """

    exists: bool
    expired: bool | None
    version: int
    ttl: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Update(Generic[T_co]):
    """Run ``transform`` on ``key`` and write what it decides, conditionally.

    With ``known`` the store first tries the transform on it and writes with
    ``known.revision`` as the expected revision (one round trip when nobody else
    wrote); only on conflict does it read and run the transform again.
    """

    key: str
    transform: Transform[T_co]
    known: Versioned | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadLease:
    """Ask the store about another session's lease. The result is a ``LeaseView``."""

    lease_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PutLease:
    """Write (renew) our own lease record, alive for ``ttl`` seconds of store time."""

    lease_id: str
    ttl: float
    info: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DropLease:
    """Remove our lease after a clean close."""

    lease_id: str


Request = Update[object] | ReadLease | PutLease | DropLease
