"""Taking the lock: the load phase of the locker state machine.

``_attempt`` sends an acquire (or a confirmation of a grant made while our lease
lapsed); ``_on_acquire`` takes its outcome: granted (``_granted``: the data, the
edits made while loading, the inbox), held by another session (``_held``, which asks
the load mode what to do: wait, request a release, steal or cancel), superseded, or
expired in the store's queue. ``_on_request`` and ``_on_session`` take the replies to a
release request and to a read of the holder's lease; the takeover is decided there
(``_force_expired``, the holder's lease ``expired``) and made by ``_take_over_now``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sessionlocker.core import transforms as tx
from sessionlocker.core._machine import NEVER, Machine
from sessionlocker.core.modes import Attempt, LoadMode, check_mode
from sessionlocker.core.protocol import LeaseView, ReadLease, Update, Updated, Versioned
from sessionlocker.core.record import Lock
from sessionlocker.core.spec import D
from sessionlocker.core.states import Event, Lifecycle, RequestKind, Status
from sessionlocker.core.storable import encode_data
from sessionlocker.errors import (
    LockUnavailable,
    UsageError,
)

__all__ = ["LoadSteps"]


class LoadSteps(Machine[D]):
    """The load phase of ``Locker`` (see the module docstring)."""

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
            self._lease.when_available(lambda: self._notice(None))
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
            ask=self._mode is LoadMode.FORCE,  # a held record gets our request in this call
        )
        self._load.attempt_expires = now + self._load.validity
        self._send(RequestKind.ACQUIRE, Update(key=self.store_key, transform=transform))

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
            if isinstance(outcome, tx.Held) and outcome.asked:
                self._load.requested = (outcome.lock, now)  # withdrawn before the end
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
        if self._changes.pending:
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
            self._mark()

    def _held(self, outcome: tx.Held, now: float, current: Versioned | None) -> None:
        lock = outcome.lock
        self._move(Event.HELD)
        if lock != self._load.holder:
            self._load.holder, self._load.watch = lock, None
        self._load.attempts += 1
        if outcome.asked:  # this acquire wrote our request (``force``): as ``_on_request``
            self._on_request(tx.Requested(lock), now)
            return
        mode = self._decide(lock, now)
        if mode is None:
            return
        if mode is LoadMode.STEAL:
            self._take_over_now(lock, now)
        elif mode is LoadMode.FORCE and not outcome.requested:
            seen = (
                None
                if current is None or outcome.record is None
                else tx.Known(current.value, outcome.record)
            )
            transform = tx.request_release(
                session=self._lease.lease_id, at=self._lease.wall(), seen=seen
            )
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
