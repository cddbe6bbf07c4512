"""The locker state machine: one key, one session, no I/O.

Everything that affects transitions lives here; this file does no I/O and reads no
clock. Intent is declared (``acquire``, ``release``, ``force_save``); progress happens
only in ``update(now)``, which returns the store requests to execute, and in
``handle(result, now)``, which takes each request's result back. A locker has at most
one request in flight. ``next_deadline()`` says when ``update`` has work again, so a
driver need not look at a locker before then.

The legal moves are the table ``TRANSITIONS``; anything else is a bug and raises.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from sessionlocker.core import transforms as tx
from sessionlocker.core.backoff import retry_delay
from sessionlocker.core.changes import Changes
from sessionlocker.core.lease import Lease
from sessionlocker.core.ledger import Meta
from sessionlocker.core.modes import Attempt, LoadMode, Mode, check_mode
from sessionlocker.core.operations import OperationCalls, Operations
from sessionlocker.core.protocol import (
    LeaseView,
    ReadLease,
    Request,
    Update,
    Updated,
    Versioned,
)
from sessionlocker.core.record import ZLIB, Lock, Message
from sessionlocker.core.snapshot import SaveReason, Snapshot, saved_snapshot
from sessionlocker.core.spec import D, Spec, check_key
from sessionlocker.core.states import EVENTS, TRANSITIONS, Event, Lifecycle, RequestKind, Status
from sessionlocker.core.storable import encode_data
from sessionlocker.core.tags import TagCalls
from sessionlocker.core.users import UserCalls
from sessionlocker.errors import (
    InvalidData,
    LockLost,
    LockUnavailable,
    RecordTooLarge,
    SessionLockerError,
    StoreError,
    UnstorableData,
    UsageError,
)

__all__ = ["Handler", "Host", "Locker"]

NEVER = float("inf")


_ENDED = frozenset({Status.IDLE, Status.LOST, Status.FAILED})

Callback = Callable[["Locker[Any]"], None]

#: A remote-change handler: ``handler(locker, message)`` changes ``locker.data`` (and may
#: use the locker's credit and ``send``); all of it is saved in one write.
Handler = Callable[["Locker[Any]", Message], object]


class Host(Protocol):
    """The driver a locker tells about its intent. Both calls must not block."""

    def opening(self, locker: Locker[Any]) -> None:
        """``locker`` is about to acquire; raise ``AlreadyOpen`` to refuse (state unchanged)."""

    def wake(self, locker: Locker[Any]) -> None:
        """``locker`` has work before its last reported deadline; look at it soon."""


@dataclass(frozen=True, slots=True)
class _Save:
    """A save being sent, kept as it is across retries so a retry is the same write."""

    seq: int
    data_json: str
    upto: int
    release: bool
    only_if_asked: bool
    encoding: str | None
    meta: Meta
    reason: SaveReason


@dataclass(slots=True, kw_only=True)
class _Load:
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
class _Saves:
    """What this lock has written and is writing (see ``_saving``)."""

    #: the record as last read or written, and as decoded (for a conditional write)
    known: Versioned | None = None
    decoded: tx.Known | None = None
    #: the number of our last save (the stamp that finds a save after a lost reply)
    seq: int = 0
    #: the save in flight or to retry, the same write each time
    pending: _Save | None = None
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
class _Leaving:
    """How this lock ends (see ``_hand_off``, ``_end_after_strays``)."""

    #: another session asked for the record while ``defer_release_requests`` held it
    asked: bool = False
    #: the release honours a release request (the last save's reason is ``HANDOFF``)
    handoff: bool = False
    #: what to do once no stray acquire of ours can land any more
    then: Callable[[], None] | None = None
    #: the service is closing (the last save's reason is ``SHUTDOWN``)
    shutdown: bool = False


class Locker(OperationCalls, UserCalls, TagCalls, Generic[D]):
    """Exclusive ownership of one record, as a state machine; ``data`` is a ``D``.

    ``data`` is usable at once: before the load completes it is a transient copy from
    ``Spec.create``; changes made to it through ``edit`` are replayed on the loaded data,
    or, with ``Spec.merge_offline``, the transient copy is merged into the loaded data.
    ``token`` is the fencing epoch while loaded: it grows with every acquire, so other
    systems can refuse a write carrying an older token.

    Saves: ``save_reason`` says why the save being made happens (set before the
    ``before_save`` event) and ``final_save`` whether it is meant to end the lock (true
    once per lock: a release, a handoff or a shutdown); ``last_saved`` is a ``Snapshot``
    of the last committed write (set before the ``saved`` event).

    Exactly-once operations (``apply_once``, ``purchase``, credit, ``send`` and the
    inbox, applied through ``handlers`` by message kind) are in ``operations``. User ids
    (``user_ids``, ``add_user_id``, ``remove_user_id``) are in ``users``; metadata tags
    (``tags``, ``set_tag``, ``remove_tag``) in ``tags``.
    """

    _seen: int
    _look: float
    _load: _Load
    _saves: _Saves
    _leaving: _Leaving

    def __init__(
        self,
        key: str,
        spec: Spec[D],
        lease: Lease,
        *,
        host: Host | None = None,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.key = check_key(key)
        self.spec = spec
        self.store_key = spec.store_key(key)
        self.status = Status.IDLE
        self.data: D = spec.create()
        self.token: int | None = None
        self.error: SessionLockerError | None = None
        self.failure: str | None = None
        self._lease = lease
        self._host = host
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in Lifecycle}
        self._queued: list[Lifecycle] = []
        self._mode: LoadMode | Callable[[Attempt], LoadMode | str] = LoadMode.REPEAT
        self._fresh_json = "null"
        self._fresh = spec.fresh(None)
        self._inflight: RequestKind | None = None
        self._outbox: tuple[RequestKind, Request] | None = None
        self._due = NEVER
        self._failures = 0
        self._changes = Changes()
        #: Changes made while loading, to make again on the loaded record: data edits
        #: (``edit``) with True, changes of the ledger's user ids and tags with False.
        self._edits: list[tuple[bool, Callable[[Any], object]]] = []
        self._port = _Port(self)
        self._ops = Operations(self._port, {} if handlers is None else handlers, spec.history_limit)
        self._seen = self._look = -1
        #: While True, a release request another session writes is noted
        #: (``release_requested``) and not honoured: the driver's user is in the middle
        #: of a piece of work, and ``release()`` (which clears the request) honours it.
        self.defer_release_requests = False
        self.save_reason: SaveReason | None = None
        self.final_save = False
        self.last_saved: Snapshot | None = None
        self._reset_session()

    # ----------------------------------------------------------------- intent

    def acquire(self, mode: Mode = LoadMode.REPEAT) -> None:
        """Start loading. Allowed when idle, lost or failed; raises ``UsageError`` otherwise."""
        if self.status not in _ENDED:
            raise UsageError(f"{self.key!r} is {self.status.value}; acquire() needs it idle")
        checked = check_mode(mode)
        fresh = self.spec.create()
        fresh_json = encode_data(fresh)
        if self.spec.validate is not None:
            self.spec.validate(fresh)
        if self._host is not None:
            self._host.opening(self)
        self._move(Event.ACQUIRE)
        self._mode = checked
        self._fresh_json = fresh_json
        self.data = fresh
        self.error = self.failure = None
        self._edits.clear()
        self._ops = Operations(self._port, self._ops.handlers, self.spec.history_limit)
        self._reset_session()
        self.save_reason, self.final_save, self.last_saved = None, False, None
        self._changes.start()
        self._due = float("-inf")
        self._wake()

    def release(self, *, shutdown: bool = False) -> None:
        """Save and release (or cancel a load). Does nothing when already ended or ending.

        ``shutdown``: the service is closing (the last save's reason is ``SHUTDOWN``).
        """
        if self.status in _ENDED or self.status is Status.RELEASING:
            return
        self._move(Event.RELEASE)
        self._leaving.shutdown = shutdown
        self._outbox = None
        if self._inflight is None:
            self._due = float("-inf")
        self._wake()

    def force_save(self) -> None:
        """Save at the next update (or right after the load completes)."""
        self._saves.force = True
        if self.status is Status.LOADED and self._inflight is None and self._outbox is None:
            self._due = float("-inf")
            self._wake()

    def poke(self) -> None:
        """Look at the stored record again at the next update (it may have changed)."""
        self.notice(None)

    def notice(self, revision: int | None) -> None:
        """The store says the record was written (at ``revision``, if known): look again,
        unless a result already showed that revision (our own write, say). A look asked
        for while a request is in flight happens right after it.
        """
        if self.status in _ENDED or (revision is not None and revision <= self._seen):
            return
        if self._inflight is not None or self._outbox is not None:
            self._look = max(self._look, NEVER if revision is None else revision)
            return
        self._saves.to_look = self._saves.to_look or self.status is Status.LOADED
        self._due = float("-inf")
        self._wake()

    def mark_changed(self) -> int:
        """Note that ``data`` changed; returns the change id for ``when_saved``.

        Returns 0 when no save of this locker can hold the change any more (it is not
        loading or loaded: ended, or ending with its final write sent); ``when_saved(0,
        ...)`` answers False at once.
        """
        if not (self._port.loading or self._port.writable):
            return 0
        return self._changes.mark()

    def edit(self, change: Callable[[D], object]) -> int:
        """Apply ``change(data)`` now; before the load completes, again on the loaded data."""
        change(self.data)
        if self.status in (Status.LOADING, Status.WAITING):
            self._edits.append((True, change))
        return self.mark_changed()

    def _edit_meta(self, change: Callable[[], object]) -> int:
        """``edit`` for the ledger's user ids and tags: replayed even with ``merge_offline``."""
        change()
        if self.status in (Status.LOADING, Status.WAITING):
            self._edits.append((False, lambda _data: change()))
        return self.mark_changed()

    def when_saved(self, change_id: int, callback: Callable[[bool], None]) -> None:
        """Call back True once a committed write holds the change; False if none ever will."""
        try:
            self._changes.when_saved(change_id, callback, ended=self.status in _ENDED)
        except UsageError as exc:
            raise UsageError(f"{exc} on {self.key!r}") from None

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(locker)`` on a lifecycle event; returns a function that stops it."""
        if event not in EVENTS:
            raise UsageError(f"unknown event {event!r}; events are {sorted(EVENTS)}")
        self._callbacks[event].append(callback)
        return lambda: self._callbacks[event].remove(callback)

    def is_available(self, now: float | None = None) -> bool:
        """Loaded, our lease within its renew deadline, and our lock checked since any lapse."""
        return (
            self.status is Status.LOADED and self._lease.available(now) and not self._stale_check()
        )

    @property
    def request_in_flight(self) -> RequestKind | None:
        """The kind of the store request out now (``acquire``, ``confirm``, ``save``,
        ``session``, ``request``, ``deliver``, ``withdraw`` or ``fence``), or ``None``."""
        return self._inflight

    @property
    def release_requested(self) -> bool:
        """Another session asked for the record while ``defer_release_requests`` held it."""
        return self._leaving.asked

    @property
    def changes_pending(self) -> bool:
        """True while some marked change is not yet in a committed write."""
        return self._changes.pending

    # ------------------------------------------------------------------ progress

    def next_deadline(self) -> float | None:
        """When ``update`` will have work; ``None`` while a request is in flight or ended."""
        if self._inflight is not None or self._due == NEVER:
            return None
        return self._due

    def update(self, now: float) -> list[Request]:
        """Make progress; return the store requests to execute now (at most one)."""
        if self._inflight is not None:
            return []
        if self._outbox is None and now >= self._due:
            self._step(now)
        self._fire()
        if self._outbox is None:
            return []
        (self._inflight, request), self._outbox = self._outbox, None
        self._due = NEVER
        return [request]

    def handle(self, result: object, now: float) -> None:
        """Take the result (or the ``StoreError``) of the request ``update`` returned."""
        kind, self._inflight = self._inflight, None
        if kind is None:
            raise UsageError("handle() called with no request in flight")
        if (
            isinstance(result, Updated)
            and kind is not RequestKind.DELIVER
            and result.current is not None
        ):
            self._seen = max(self._seen, result.current.revision)
        if isinstance(result, StoreError):
            self._store_failed(kind, result, now)
        elif kind in (RequestKind.ACQUIRE, RequestKind.CONFIRM) and isinstance(result, Updated):
            self._on_acquire(result, now)
        elif kind is RequestKind.LEASE and isinstance(result, LeaseView):
            self._on_session(result, now)
        elif kind is RequestKind.REQUEST and isinstance(result, Updated):
            self._on_request(result.outcome, now)
        elif kind is RequestKind.SAVE and isinstance(result, Updated):
            self._on_save(result, now)
        elif kind is RequestKind.DELIVER and isinstance(result, Updated):
            self._on_deliver(result.outcome, now)
        elif kind in (RequestKind.WITHDRAW, RequestKind.FENCE):
            self._load.requested = None
            self._load.unsure = False
            self._load.confirm = None
            if kind is RequestKind.FENCE:
                self._load.stray_until = -NEVER
            self._due = now
        else:
            raise UsageError(f"unexpected result {result!r} for a {kind} request")
        look, self._look = self._look, -1
        if look > self._seen and self.status not in _ENDED:
            self._saves.to_look = self._saves.to_look or self.status is Status.LOADED
            self._due = min(self._due, now)
        self._fire()

    # ------------------------------------------------------------------ steps

    def _step(self, now: float) -> None:
        if self.status is Status.WAITING:
            self._move(Event.RETRY)
        if self.status is Status.LOADING:
            self._attempt(now)
        elif self.token is not None and self._lease.lapsed(now):
            self._lapse()
        elif self.status is Status.LOADED:
            if self._ops.ledger.deliverable() is not None:
                self._deliver()
            else:
                self._save(now, release=False)
        elif self.status is Status.RELEASING:
            self._release_step(now)
        else:
            self._due = NEVER

    def _attempt(self, now: float) -> None:
        if self._load.started is None:
            self._load.started = now
        if not self._lease.available(now):
            failed = self._lease.failed()
            if failed is not None:  # the lease record cannot be written: no load can be
                self._fail("store_error", failed)
                return
            error = self._lease.error
            if error is not None and error is not self.error:  # once per failed renewal
                self._report(error)
            self._due = NEVER
            self._lease.when_available(self.poke)
            return
        if self._load.confirm is not None:
            check = tx.confirm(
                session=self._lease.lease_id, epoch=self._load.confirm, checked=self._lease.gaps
            )
            self._send(RequestKind.CONFIRM, Update(key=self.store_key, transform=check))
            return
        at = self._lease.wall()
        transform = tx.acquire(
            session=self._lease.lease_id,
            at=at,
            fresh=self._fresh,
            fresh_json=self._fresh_json,
            upgrade=self.spec.upgrade,
            take_over=self._load.take_over,
            expires=at + self._load.validity,
            wall=self._lease.wall,
        )
        self._load.attempt_expires = now + self._load.validity
        self._send(RequestKind.ACQUIRE, Update(key=self.store_key, transform=transform))

    def _save(self, now: float, *, release: bool) -> None:
        save = self._saves.pending or self._new_save(now, release=release)
        if save is None:
            return
        self._saves.pending = save
        transform = tx.save(
            session=self._lease.lease_id,
            epoch=self._epoch(),
            seq=save.seq,
            data_json=save.data_json,
            release=save.release,
            only_if_asked=save.only_if_asked,
            encoding=save.encoding,
            max_bytes=self.spec.max_record_bytes,
            checked=self._lease.gaps if self._stale_check() else None,
            meta=save.meta,
            known=self._saves.decoded,
        )
        # After a lost reply ``known`` may be stale: the conditional write then conflicts,
        # the store hands back what is stored, and the transform finds its own stamp.
        known = None if save.only_if_asked else self._saves.known
        self._send(RequestKind.SAVE, Update(key=self.store_key, transform=transform, known=known))

    def _new_save(self, now: float, *, release: bool) -> _Save | None:
        reason = self._reason()
        self.save_reason = reason
        self.final_save = release or reason is SaveReason.HANDOFF
        self._emit(Lifecycle.BEFORE_SAVE)
        force, self._saves.force = self._saves.force, False
        upto = self._changes.last
        try:
            data_json = encode_data(self.data)
            if self.spec.validate is not None:
                self.spec.validate(self.data)
        except (UnstorableData, InvalidData) as exc:
            self.error = exc
            self._queued.append(Lifecycle.ERROR)
            if not release:
                self._saves.autosave_at = now + self.spec.autosave_period
                self._due = self._saves.autosave_at
                return None
            return self._next_save(
                self._saves.saved_json, self._changes.saved, self._saves.saved_meta, release, reason
            )
        quiet = (
            not (release or force)
            and data_json == self._saves.saved_json
            and upto <= self._changes.saved
        )
        if quiet and not self._saves.to_look and not self._stale_check():
            # Nothing to save and nobody asked us to look: no store call. A release
            # request, a message or a takeover reaches us as a notice (a notification,
            # or the service's mailbox read once per lease renewal), not by polling.
            self._saves.autosave_at = now + self.spec.autosave_period
            self._due = self._saves.autosave_at
            return None
        self._saves.to_look = False
        meta = self._ops.ledger.snapshot()
        return self._next_save(data_json, upto, meta, release, reason, only_if_asked=quiet)

    def _reason(self) -> SaveReason:
        """Why the save about to be made happens."""
        if self._leaving.handoff:
            return SaveReason.HANDOFF
        if self.status is Status.RELEASING:
            return SaveReason.SHUTDOWN if self._leaving.shutdown else SaveReason.RELEASE
        return SaveReason.FORCED if self._saves.force else SaveReason.AUTOSAVE

    def _next_save(
        self,
        data_json: str,
        upto: int,
        meta: Meta,
        release: bool,
        reason: SaveReason,
        *,
        only_if_asked: bool = False,
    ) -> _Save:
        self._saves.seq += 1
        threshold = self.spec.compress_above
        encoding = ZLIB if threshold is not None and len(data_json) >= threshold else None
        return _Save(
            self._saves.seq, data_json, upto, release, only_if_asked, encoding, meta, reason
        )

    def _release_step(self, now: float) -> None:
        ledger = self._ops.ledger
        if self.token is not None and self._saves.pending is None and ledger.uncommitted():
            self._save(now, release=False)  # commit the outbox, so it can be delivered first
        elif self.token is not None and self._saves.pending is None and ledger.deliverable():
            self._deliver()
        elif self.token is not None:
            self._save(now, release=True)
        elif (
            self._load.requested is not None or self._load.unsure or self._load.confirm is not None
        ):
            # our request may be there, or our lock (a lost reply, or an unconfirmed grant)
            transform = tx.withdraw(session=self._lease.lease_id)
            self._send(RequestKind.WITHDRAW, Update(key=self.store_key, transform=transform))
        elif self._load.stray_until > now:  # an acquire of ours may still land: outwait it
            self._due = self._load.stray_until
        elif self._load.stray_until > -NEVER:  # it can no longer land: clear it if it did
            transform = tx.withdraw(session=self._lease.lease_id, fence=True)
            self._send(RequestKind.FENCE, Update(key=self.store_key, transform=transform))
        else:
            ending, self._leaving.then = self._leaving.then, None
            if ending is None:
                self._end(Event.RELEASED, Lifecycle.IDLE)
            else:
                ending()

    def _deliver(self) -> None:
        message = self._ops.ledger.deliverable()
        if message is None or message.to is None:
            raise UsageError("no committed message to deliver")
        self._saves.delivering = message
        transform = tx.deliver(
            message=message,
            fresh=self._fresh,
            fresh_json=self._fresh_json,
            max_bytes=self.spec.max_record_bytes,
        )
        self._send(
            RequestKind.DELIVER, Update(key=self.spec.store_key(message.to), transform=transform)
        )

    def _send(self, kind: RequestKind, request: Request) -> None:
        """Queue the one request ``update`` hands out next (from a step or a result)."""
        self._outbox = (kind, request)
        self._saves.sent_gaps = self._lease.gaps
        self._due = float("-inf")

    # ---------------------------------------------------------------- results

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

    def _on_acquire(self, result: Updated[Any], now: float) -> None:
        self._failures = 0
        outcome = result.outcome
        if not isinstance(outcome, tx.Expired):  # an expired one read nothing: still unsure
            self._load.unsure = False
        if isinstance(outcome, tx.Granted) and self._unconfirmed():
            self._load.confirm = outcome.record.epoch  # confirm the lock before announcing it
            self._due = now
        elif isinstance(outcome, tx.Granted):
            self._granted(outcome, result.current, now)
        elif isinstance(outcome, tx.Lost):  # our grant was superseded before we saw it
            self._lose(outcome.lock, now)
        elif isinstance(outcome, tx.Expired):  # our calls queue up: give the next one longer
            # (no cap: a cap below the queue's delay would starve the load for ever)
            self._load.validity *= 2
            self._due = now
        elif self.status is Status.RELEASING:
            self._due = now
        elif isinstance(outcome, tx.Held):
            self._held(outcome, now, result.current)
        elif isinstance(outcome, tx.Refused):
            self._fail(outcome.reason, outcome.error)

    def _unconfirmed(self) -> bool:
        """A grant that may have been superseded while its reply was on its way: our
        lease lapsed (or its renew deadline passed) since the request was sent, so
        another session may have taken the record over meanwhile. The clock is read
        afresh: the frame's ``now`` may be older than a pause that just ended."""
        lapsed = self._lease.gaps != self._saves.sent_gaps or not self._lease.available()
        # A confirmation's own reply is judged the same way: confirmed again until one
        # comes back with the lease unlapsed (or the load times out, or is cancelled).
        return self.status is Status.LOADING and lapsed

    def _granted(self, outcome: tx.Granted, current: Versioned | None, now: float) -> None:
        self._load.confirm = None
        record = outcome.record
        stamp = record.stamp
        self._saves.checked = self._saves.sent_gaps
        mine = stamp is not None and (stamp.session, stamp.epoch) == (
            self._lease.lease_id,
            record.epoch,
        )
        self.token = record.epoch
        self._saves.known = current
        self._saves.decoded = (
            None if current is None else tx.Known(current.value, record.with_(data=None))
        )
        self._saves.seq = stamp.seq if mine and stamp is not None else 0
        offline, self.data = self.data, record.data
        self._saves.saved_json = outcome.data_json
        self._ops.ledger.load(record)
        self._saves.saved_meta = self._ops.ledger.snapshot()
        if self.status is Status.LOADING:
            self._move(Event.GRANTED)
            self._queued.append(Lifecycle.LOADED)
            if self._load.take_over is not None:
                self._queued.append(Lifecycle.TAKEOVER)
            elif self._load.requested is not None:
                self._queued.append(Lifecycle.HANDOFF)
        merge = self.spec.merge_offline
        if merge is not None:
            self._merge_offline(merge, offline, outcome.data_json)
        for on_data, change in self._edits:
            if merge is not None and on_data:
                continue  # its effect is in the transient copy, merged above
            try:
                change(self.data)
            except Exception as exc:  # a user's edit; report it, keep the rest
                self._report(
                    UsageError(f"an edit made before load failed on the loaded data: {exc!r}")
                )
        self._edits.clear()
        self._ops.replay()
        self._ops.take(record.inbox)
        if self.changes_pending:
            self._saves.force = True
        self._saves.autosave_at = now + self.spec.autosave_period
        urgent = self._saves.force or self._ops.ledger.deliverable() is not None
        self._due = now if urgent or self.status is Status.RELEASING else self._saves.autosave_at

    def _merge_offline(self, merge: Callable[[Any, Any], Any], offline: Any, loaded: str) -> None:
        """``data`` from ``merge(loaded data, transient copy)``; marked when it differs."""
        try:
            merged = merge(self.data, offline)
            changed = encode_data(merged) != loaded
        except Exception as exc:  # the user's merge; the loaded data stays as it is
            self.data = json.loads(loaded)  # the merge may have changed it halfway
            self._report(UsageError(f"merge_offline failed on {self.key!r}: {exc!r}"))
            return
        self.data = merged
        if changed:
            self.mark_changed()

    def _held(self, outcome: tx.Held, now: float, current: Versioned | None) -> None:
        lock = outcome.lock
        self._move(Event.HELD)
        if lock != self._load.holder:
            self._load.holder, self._load.watch = lock, None
        self._load.attempts += 1
        mode = self._decide(lock, now)
        if mode is None:
            return
        if mode is LoadMode.STEAL:
            self._take_over_now(lock, now)
        elif mode is LoadMode.FORCE and not outcome.requested:
            transform = tx.request_release(session=self._lease.lease_id, at=self._lease.wall())
            # The record as just read: one conditional write when it has not moved since.
            self._send(
                RequestKind.REQUEST, Update(key=self.store_key, transform=transform, known=current)
            )
        elif mode is LoadMode.FORCE and self._force_expired(lock, now):
            self._take_over_now(lock, now)
        else:
            self._send(RequestKind.LEASE, ReadLease(lease_id=lock.session))

    def _decide(self, lock: Lock, now: float) -> LoadMode | None:
        mode = self._mode
        if callable(mode) and not isinstance(mode, LoadMode):
            started = now if self._load.started is None else self._load.started
            attempt = Attempt(
                key=self.key, number=self._load.attempts, lock=lock, waited=now - started
            )
            try:
                mode = check_mode(mode(attempt))
            except Exception as exc:  # the user's mode callable failed; give up the load
                self._cancel(now, LockUnavailable(f"load mode callable failed: {exc!r}"))
                return None
            if not isinstance(mode, LoadMode):
                self._cancel(now, LockUnavailable("load mode callable must return a mode name"))
                return None
        if mode is LoadMode.CANCEL:
            self._cancel(now, LockUnavailable(f"{self.key!r} is held by session {lock.session}"))
            return None
        return mode

    def _force_expired(self, lock: Lock, now: float) -> bool:
        if self._load.requested is None or self._load.requested[0] != lock:
            self._load.requested = (lock, now)
        return now >= self._load.requested[1] + self.spec.force_timeout

    def _on_request(self, outcome: object, now: float) -> None:
        if self.status is Status.RELEASING:
            self._due = now
            if isinstance(outcome, tx.Requested):
                self._load.requested = (outcome.lock, now)
        elif isinstance(outcome, tx.Requested):
            self._force_expired(outcome.lock, now)
            self._due = now + self.spec.poll_period
        elif isinstance(outcome, tx.Refused):
            self._fail(outcome.reason, outcome.error)
        else:
            self._due = now

    def _on_session(self, view: LeaseView, now: float) -> None:
        lock = self._load.holder
        if self.status is Status.RELEASING or lock is None:
            self._due = now
            return
        expired = view.expired
        if expired is None:
            seen = (lock.session, view.exists, view.version)
            if self._load.watch is None or self._load.watch[0] != seen:
                self._load.watch = (seen, now)
            ttl = view.ttl if view.ttl is not None else self.spec.lease
            expired = now - self._load.watch[1] >= ttl
        if expired:
            self._take_over_now(lock, now)
            return
        due = now + self.spec.poll_period
        if self._load.requested is not None:
            due = min(due, self._load.requested[1] + self.spec.force_timeout)
        self._due = due

    def _on_save(self, result: Updated[Any], now: float) -> None:
        save, self._saves.pending = self._saves.pending, None
        self._failures = 0
        outcome = result.outcome
        if save is None:
            raise UsageError("a save result came with no save in flight")
        if isinstance(outcome, tx.Lost):
            self._lose(outcome.lock, now)
            return
        if isinstance(outcome, tx.TooLarge):
            self._too_large(save, outcome.size, now)
            return
        if result.current is not None:
            self._saves.known = result.current
            self._saves.decoded = tx.known_after(
                outcome.written, result.current, self._saves.decoded
            )
        self._saves.saved_json = save.data_json
        self._saves.saved_meta = save.meta
        self._ops.ledger.saved(save.meta)
        self._changes.confirm(save.upto)
        if outcome.written is not None and result.current is not None:
            self.last_saved = saved_snapshot(
                self.key,
                outcome.written,
                result.current,
                data_json=save.data_json,
                written=self._lease.wall(),
                reason=save.reason,
                final=not outcome.held,
            )
        if not save.only_if_asked or result.wrote:
            self._queued.append(Lifecycle.SAVED)
        if outcome.held:
            self._saves.checked = self._saves.sent_gaps
            self._saves.autosave_at = now + self.spec.autosave_period
            self._ops.take(outcome.inbox)
            self._due = now if self._urgent() else self._saves.autosave_at
            if outcome.asked and self.defer_release_requests:
                self._leaving.asked = True  # the driver releases when its user's work is done
            elif outcome.asked and self.status is Status.LOADED:
                self._hand_off(now)
        elif outcome.released or save.release:
            event, name = Event.RELEASED, Lifecycle.RELEASED
            if self._leaving.handoff:
                event, name = Event.REPLACED, Lifecycle.REPLACED
            self._end_after_strays(lambda: self._end(event, name), now)
        else:
            self._lose(None, now)

    def _on_deliver(self, outcome: object, now: float) -> None:
        message, self._saves.delivering = self._saves.delivering, None
        self._failures = 0
        if message is None:
            raise UsageError("a delivery result came with no delivery in flight")
        if isinstance(outcome, tx.Delivered):
            self._ops.ledger.delivered(message.id)
            self.mark_changed()  # the smaller outbox goes with the next save
        else:  # the receiver's record is refused or full: keep the message, stop trying
            self._ops.ledger.failed.add(message.id)
            size = outcome.size if isinstance(outcome, tx.TooLarge) else 0
            reason = outcome.error if isinstance(outcome, tx.Refused) else None
            self._report(
                reason or RecordTooLarge(size, self.spec.max_record_bytes),
            )
        self._due = now if self._urgent() else self._saves.autosave_at

    def _urgent(self) -> bool:
        return (
            self._saves.force
            or self.status is Status.RELEASING
            or self._stale_check()
            or self._ops.ledger.deliverable() is not None
        )

    def _too_large(self, save: _Save, size: int, now: float) -> None:
        self.error = RecordTooLarge(size, self.spec.max_record_bytes)
        self._queued.append(Lifecycle.ERROR)
        if save.release or save.reason is SaveReason.HANDOFF:  # end anyway, last good value
            saved = self._changes.saved
            retry = self._next_save(
                self._saves.saved_json, saved, self._saves.saved_meta, True, save.reason
            )
            self._saves.pending = retry
            self._save(now, release=True)
            return
        self._saves.autosave_at = now + self.spec.autosave_period
        self._due = self._saves.autosave_at

    # ------------------------------------------------------------------ endings

    def _hand_off(self, now: float) -> None:
        """Another session asks for the record: stop being available first (releasing),
        then release with the next save, so both are never available at once."""
        self._leaving.handoff = True
        self._move(Event.RELEASE)
        self._outbox = None
        self._due = now

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

    def _take_over_now(self, lock: Lock, now: float) -> None:
        self._load.take_over = lock
        self._move(Event.RETRY)
        self._due = now

    def _cancel(self, now: float, error: LockUnavailable) -> None:
        self.error = error
        if self._load.requested is not None or self._load.stray_until > -NEVER:
            self._move(Event.RELEASE)
            self._due = now
        else:
            self._end(Event.CANCEL, Lifecycle.IDLE)

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

    def _reset_session(self) -> None:
        self._load = _Load(validity=self.spec.lease)
        self._saves = _Saves()
        self._leaving = _Leaving()

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

    def __repr__(self) -> str:
        return f"<Locker {self.store_key!r} {self.status.value} token={self.token}>"


class _Port:
    """The locker as its ``Operations`` and the ledger calls see it (``operations.Port``):
    the few facts and calls they need, kept off the public ``Locker``."""

    __slots__ = ("owner",)

    def __init__(self, owner: Locker[Any]) -> None:
        self.owner = owner

    @property
    def data(self) -> Any:
        return self.owner.data

    @data.setter
    def data(self, value: Any) -> None:
        self.owner.data = value

    @property
    def key(self) -> str:
        return self.owner.key

    @property
    def status(self) -> Status:
        return self.owner.status

    @property
    def token(self) -> int | None:
        return self.owner.token

    @property
    def error(self) -> SessionLockerError | None:
        return self.owner.error

    @property
    def loading(self) -> bool:
        return self.owner.status in (Status.LOADING, Status.WAITING)

    @property
    def writable(self) -> bool:
        owner = self.owner
        releasing = owner.status is Status.RELEASING and owner._saves.pending is None
        return owner.token is not None and (owner.status is Status.LOADED or releasing)

    @property
    def lease_id(self) -> str:
        return self.owner._lease.lease_id

    def wall(self) -> float:
        return self.owner._lease.wall()

    def report(self, error: SessionLockerError) -> None:
        self.owner._report(error)

    def emit_later(self, event: Lifecycle) -> None:
        self.owner._queued.append(event)

    def mark_changed(self) -> int:
        return self.owner.mark_changed()

    def force_save(self) -> None:
        self.owner.force_save()

    def when_saved(self, change_id: int, callback: Callable[[bool], None]) -> None:
        self.owner.when_saved(change_id, callback)

    def edit_meta(self, change: Callable[[], object]) -> int:
        return self.owner._edit_meta(change)
