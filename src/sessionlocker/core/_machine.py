"""What every part of the locker state machine shares: its state and its moves.

``Machine`` declares the state of a ``Locker`` (public fields, then the few private
ones; the per-lock ones grouped in ``Load``, ``Saves`` and ``Leaving``) and holds the
moves both phases make: sending the one request, taking a store error, the shared
endings (loss, lapse, failure, waiting out a stray acquire) and the callback queue.
The load phase is in ``_loading``, the save phase in ``_saving``, the public calls and
the dispatch of results in ``locker``. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from sessionlocker.core import transforms as tx
from sessionlocker.core.backoff import retry_delay
from sessionlocker.core.changes import Changes
from sessionlocker.core.lease import Lease
from sessionlocker.core.ledger import Meta
from sessionlocker.core.modes import Attempt, LoadMode
from sessionlocker.core.operations import Operations
from sessionlocker.core.protocol import Request, Versioned
from sessionlocker.core.record import Lock, Message, Record
from sessionlocker.core.snapshot import SaveReason, Snapshot
from sessionlocker.core.spec import D, Spec
from sessionlocker.core.states import TRANSITIONS, Event, Lifecycle, RequestKind, Status
from sessionlocker.errors import (
    LockLost,
    SessionLockerError,
    StoreError,
    UsageError,
)

__all__ = ["ENDED", "NEVER", "Leaving", "Load", "Machine", "Save", "Saves"]

NEVER = float("inf")

#: The statuses a locker has ended in: ``acquire()`` may start it again.
ENDED = frozenset({Status.IDLE, Status.LOST, Status.FAILED})


@dataclass(frozen=True, slots=True)
class Save:
    """A save being sent, kept as it is across retries so a retry is the same write."""

    seq: int
    data_json: str
    #: ``data_json`` as UTF-8 bytes, as the storability check produced them
    data_bytes: bytes
    upto: int
    release: bool
    only_if_asked: bool
    encoding: str | None
    meta: Meta
    reason: SaveReason


@dataclass(slots=True, kw_only=True)
class Load:
    """How taking the lock goes, for one acquire (see ``_loading``)."""

    #: ``now`` at the first attempt (``Attempt.waited`` counts from it)
    started: float | None = None
    #: attempts that found the record held (``Attempt.number``)
    attempts: int = 0
    #: the lock another session holds, as last seen
    holder: Lock | None = None
    #: the lock we take over at the next acquire (its holder's lease expired, a steal,
    #: or a force timeout)
    take_over: Lock | None = None
    #: the lock our release request went to, and when we saw it asked
    requested: tuple[Lock, float] | None = None
    #: what the holder's lease looked like, and since when (to time a lease with no ttl)
    watch: tuple[tuple[str, bool, int], float] | None = None
    #: an acquire or request of ours with an unknown outcome may be on the record
    unsure: bool = False
    #: the epoch of a grant to confirm before announcing it
    confirm: int | None = None
    #: until when an acquire of ours with an unknown outcome may still land
    stray_until: float = -NEVER
    #: when the acquire in flight expires, if it is still queued in the store
    attempt_expires: float = -NEVER
    #: how long an acquire stays valid (doubled each time one expired in a queue)
    validity: float


@dataclass(slots=True, kw_only=True)
class Saves:
    """What this lock has written and is writing (see ``_saving``)."""

    #: the record as last read or written, and as decoded (for a conditional write)
    known: Versioned | None = None
    decoded: tx.Known | None = None
    #: the number of our last save (the stamp that finds a save after a lost reply)
    seq: int = 0
    #: the save in flight or to retry, the same write each time
    pending: Save | None = None
    #: the data and ledger of the last committed write
    saved_json: str = "null"
    saved_meta: Meta = field(default_factory=Meta)
    #: a save is asked for at the next step, even with nothing new
    force: bool = False
    autosave_at: float = NEVER
    #: the lease's lapse count when our lock was last confirmed, and when the last
    #: request was sent (a lock confirmed before the lease's latest lapse is rechecked)
    checked: int = -1
    sent_gaps: int = -1
    #: the record may have changed: a save with nothing new still calls the store
    #: (and writes only if a release request is there)
    to_look: bool = False
    #: the outbox message being delivered
    delivering: Message | None = None


@dataclass(slots=True, kw_only=True)
class Leaving:
    """How this lock ends (see ``_hand_off``, ``_end_after_strays``)."""

    #: another session asked for the record while ``defer_release_requests`` held it
    asked: bool = False
    #: the release honours a release request (the last save's reason is ``HANDOFF``)
    handoff: bool = False
    #: what to do once no stray acquire of ours can land any more
    then: Callable[[], None] | None = None
    #: the service is closing (the last save's reason is ``SHUTDOWN``)
    shutdown: bool = False


class _Host(Protocol):
    """``locker.Host`` as the machine calls it (``locker`` is the ``Locker``)."""

    def opening(self, locker: Any) -> None: ...
    def wake(self, locker: Any) -> None: ...


class Machine(Generic[D]):
    """The state and shared moves of ``Locker`` (see the module docstring)."""

    key: str
    spec: Spec[D]
    store_key: str
    status: Status
    data: D
    token: int | None
    error: SessionLockerError | None
    failure: str | None
    defer_release_requests: bool
    save_reason: SaveReason | None
    final_save: bool
    last_saved: Snapshot | None

    _lease: Lease
    _host: _Host | None
    #: callbacks by lifecycle event, and the events to fire at the next callback point
    _callbacks: dict[str, list[Callable[[Any], None]]]
    _queued: list[Lifecycle]
    _mode: LoadMode | Callable[[Attempt], LoadMode | str]
    #: the record a first acquire writes, and its data as JSON
    _fresh: Record
    _fresh_json: str
    #: the request out now, the one to hand out next, and when ``update`` has work
    _inflight: RequestKind | None
    _outbox: tuple[RequestKind, Request] | None
    _due: float
    #: store errors in a row (for the retry delay)
    _failures: int
    _changes: Changes
    #: Changes made while loading, to make again on the loaded record: data edits
    #: (``edit``) with True, changes of the ledger's user ids and tags with False.
    _edits: list[tuple[bool, Callable[[Any], object]]]
    _ops: Operations
    #: the newest revision a result showed, and a look asked for while a request was out
    _seen: int
    _look: float
    _load: Load
    _saves: Saves
    _leaving: Leaving

    def _notice(self, revision: int | None) -> None:
        """``Locker.notice``: look at the record again unless ``revision`` was seen."""
        if self.status in ENDED or (revision is not None and revision <= self._seen):
            return
        if self._inflight is not None or self._outbox is not None:
            self._look = max(self._look, NEVER if revision is None else revision)
            return
        self._saves.to_look = self._saves.to_look or self.status is Status.LOADED
        self._due = float("-inf")
        self._wake()

    def _mark(self) -> int:
        """``Locker.mark_changed``: a change id, or 0 when no save can hold it."""
        if not (self._loading() or self._writable()):
            return 0
        return self._changes.mark()

    def _loading(self) -> bool:
        """Loading or waiting: operations asked for now run on the loaded data."""
        return self.status in (Status.LOADING, Status.WAITING)

    def _writable(self) -> bool:
        """Data and ledger changes made now will be in a save of this lock."""
        releasing = self.status is Status.RELEASING and self._saves.pending is None
        return self.token is not None and (self.status is Status.LOADED or releasing)

    # ------------------------------------------------------------------ requests

    def _send(self, kind: RequestKind, request: Request) -> None:
        """Queue the one request ``update`` hands out next (from a step or a result)."""
        self._outbox = (kind, request)
        self._saves.sent_gaps = self._lease.gaps
        self._due = float("-inf")

    def _store_failed(self, kind: RequestKind, error: StoreError, now: float) -> None:
        self._failures += 1
        self.error = error
        self._queued.append(Lifecycle.ERROR)
        if kind in (RequestKind.ACQUIRE, RequestKind.REQUEST) and error.unknown_outcome:
            self._load.unsure = True  # our lock or request may be there; a cancel must clear it
        if kind is RequestKind.ACQUIRE and error.unknown_outcome:
            # It may still reach the store, until it expires: we must not end before.
            self._load.stray_until = max(self._load.stray_until, self._load.attempt_expires)
        if kind is RequestKind.ACQUIRE and not error.retryable and self.status is Status.LOADING:
            self._fail("store_error", error)
            return
        cap = min(5.0, self.spec.lease / 2)
        self._due = now + retry_delay(self.key, self._failures, cap=cap, error=error)

    # ------------------------------------------------------------------ endings

    def _end_after_strays(self, ending: Callable[[], None], now: float) -> None:
        """End now, or, while an acquire of ours with an unknown outcome may still land
        on the record, release first and end once it can no longer land (it expires)."""
        if self._load.stray_until == -NEVER:
            ending()
            return
        if self.status is not Status.RELEASING:
            self._move(Event.RELEASE)
        self._leaving.then = ending
        self.token = None
        self._saves.pending = None
        self._due = now

    def _fail(self, reason: str, error: SessionLockerError) -> None:
        self.failure = reason
        self.error = error
        self._move(Event.FAIL)
        self._finish(Lifecycle.FAILED)

    def _lose(self, lock: Lock | None, now: float) -> None:
        holder = "no session" if lock is None else f"session {lock.session} (epoch {lock.epoch})"
        self.error = LockLost(f"{self.key!r} is now held by {holder}")
        self._end_after_strays(self._lost, now)

    def _lost(self) -> None:
        self._move(Event.LOSE)
        self._finish(Lifecycle.LOST)

    def _lapse(self) -> None:
        """Our lease lapsed with no store call in flight (the store kept failing): another
        session may hold the lock now, so give it up; nothing more of ours is written."""
        ttl = self._lease.ttl
        self.error = LockLost(
            f"{self.key!r}: our lease lapsed (no successful renewal for {ttl:g} s); "
            "another session may hold it"
        )
        self._move(Event.LOSE)
        self._finish(Lifecycle.LOST)

    def _end(self, event: Event, name: Lifecycle) -> None:
        self._move(event)
        if name is not Lifecycle.IDLE:
            self._queued.append(name)
        self._finish(Lifecycle.IDLE)

    def _finish(self, name: Lifecycle) -> None:
        self._ops.drop_queued(self.error)
        self.token = None
        self._due = NEVER
        self._queued.append(name)
        self._changes.end()

    # ------------------------------------------------------------------ plumbing

    def _edit_meta(self, change: Callable[[], object]) -> int:
        """``edit`` for the ledger's user ids and tags: replayed even with ``merge_offline``."""
        change()
        if self.status in (Status.LOADING, Status.WAITING):
            self._edits.append((False, lambda _data: change()))
        return self._mark()

    def _reset_session(self) -> None:
        self._load = Load(validity=self.spec.lease)
        self._saves = Saves()
        self._leaving = Leaving()

    def _report(self, error: SessionLockerError) -> None:
        """Record ``error`` and fire ``error`` at the next callback point."""
        self.error = error
        self._queued.append(Lifecycle.ERROR)

    def _stale_check(self) -> bool:
        """Our lock was last confirmed before the lease's latest lapse."""
        return self._saves.checked != self._lease.gaps

    def _epoch(self) -> int:
        if self.token is None:
            raise UsageError(f"{self.key!r} holds no lock")
        return self.token

    def _move(self, event: Event) -> None:
        target = TRANSITIONS.get((self.status, event))
        if target is None:
            raise UsageError(f"cannot {event.value} while {self.status.value}")
        self.status = target

    def _wake(self) -> None:
        if self._host is not None:
            self._host.wake(self)

    def _emit(self, name: Lifecycle) -> None:
        for callback in list(self._callbacks[name]):
            callback(self)

    def _fire(self) -> None:
        queued, self._queued = self._queued, []
        for name in queued:
            self._emit(name)
