"""Saving, delivering and releasing: the loaded phase of the locker state machine.

``_save`` sends the pending save or a new one (``_new_save``: nothing is sent for an
autosave with nothing new unless the record may have changed); ``_on_save`` takes its
outcome: committed (and whether the record still holds our lock and whether another
session asked for it: ``transforms.save`` reports ``asked``; here a request is deferred
or honoured with ``_hand_off``), lost, or too large. ``_deliver`` and ``_on_deliver``
move a committed outbox message to its receiver. ``_release_step`` walks the last
steps of a release: commit the outbox, deliver, the final save, withdraw, fence.
"""

from __future__ import annotations

from typing import Any

from sessionlocker.core import transforms as tx
from sessionlocker.core._machine import NEVER, Machine, Save
from sessionlocker.core.ledger import Meta
from sessionlocker.core.protocol import Update, Updated
from sessionlocker.core.record import ZLIB
from sessionlocker.core.snapshot import SaveReason, saved_snapshot
from sessionlocker.core.spec import D
from sessionlocker.core.states import Event, Lifecycle, RequestKind, Status
from sessionlocker.core.storable import encode_data_bytes
from sessionlocker.errors import (
    InvalidData,
    RecordTooLarge,
    UnstorableData,
    UsageError,
)

__all__ = ["SaveSteps"]


class SaveSteps(Machine[D]):
    """The loaded phase of ``Locker`` (see the module docstring)."""

    def _save(self, now: float, *, release: bool) -> None:
        save = self._saves.pending or self._new_save(now, release=release)
        if save is None:
            return
        self._saves.pending = save
        transform = tx.save(
            session=self._lease.lease_id,
            epoch=self._epoch(),
            seq=save.seq,
            data_json=save.data_bytes,
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

    def _new_save(self, now: float, *, release: bool) -> Save | None:
        reason = self._reason()
        self.save_reason = reason
        self.final_save = release or reason is SaveReason.HANDOFF
        self._emit(Lifecycle.BEFORE_SAVE)
        force, self._saves.force = self._saves.force, False
        upto = self._changes.last
        try:
            data_bytes = encode_data_bytes(self.data)
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
        data_json = data_bytes.decode("utf-8")
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
        return self._next_save(
            data_json, upto, meta, release, reason, only_if_asked=quiet, data_bytes=data_bytes
        )

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
        data_bytes: bytes | None = None,
    ) -> Save:
        """The next save (``data_bytes``: ``data_json`` encoded, when the caller has it)."""
        self._saves.seq += 1
        threshold = self.spec.compress_above
        encoding = ZLIB if threshold is not None and len(data_json) >= threshold else None
        if data_bytes is None:
            data_bytes = data_json.encode("utf-8")
        return Save(
            self._saves.seq,
            data_json,
            data_bytes,
            upto,
            release,
            only_if_asked,
            encoding,
            meta,
            reason,
        )

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
                outcome.written, result.current, self._saves.decoded, outcome.seen
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
            self._mark()  # the smaller outbox goes with the next save
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

    def _too_large(self, save: Save, size: int, now: float) -> None:
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

    def _hand_off(self, now: float) -> None:
        """Another session asks for the record: stop being available first (releasing),
        then release with the next save, so both are never available at once."""
        self._leaving.handoff = True
        self._move(Event.RELEASE)
        self._outbox = None
        self._due = now
