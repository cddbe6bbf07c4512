"""The exactly-once bookkeeping a holder keeps beside its data, and writes with it.

A loaded locker owns seven fields of its record besides ``data``: the history of
applied operation ids, the purchase history, product credit, the outbox, which
inbox messages it has applied, the user ids the record belongs to, and its tags.
They change in memory together with the data and are written in the same save, so an
operation's effect and its id are committed together or not at all: that is what makes
an operation exactly-once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessionlocker.core.record import Message, Purchase, Record

__all__ = ["Ledger", "Meta"]


@dataclass(frozen=True, slots=True)
class Meta:
    """The holder's fields as they were when a save's data was encoded."""

    applied: tuple[str, ...] = ()
    purchases: tuple[Purchase, ...] = ()
    credit: tuple[tuple[str, int], ...] = ()
    outbox: tuple[Message, ...] = ()
    consumed: frozenset[str] = frozenset()
    user_ids: tuple[str, ...] = ()
    #: The tags as (name, value) pairs. A value is never changed in place (``set_tag``
    #: stores a copy, ``Locker.tags`` hands out copies), so snapshots may share it.
    tags: tuple[tuple[str, Any], ...] = ()

    def write(self, record: Record) -> Record:
        """``record`` with these fields, and without the inbox messages applied here.

        Messages appended to the stored inbox since (by senders) are kept.
        """
        return record.with_(**self.changes(record))

    def changes(self, record: Record) -> dict[str, Any]:
        """The fields ``write`` changes in ``record``, for one ``Record.with_`` call."""
        inbox = record.inbox
        if self.consumed:
            inbox = tuple(m for m in inbox if m.id not in self.consumed)
        return {
            "applied": self.applied,
            "purchases": self.purchases,
            "credit": dict(self.credit),
            "outbox": self.outbox,
            "inbox": inbox,
            "user_ids": self.user_ids,
            "tags": dict(self.tags),
        }


#: No ids (shared: a save's snapshot of an empty set need not build one).
_NONE: frozenset[str] = frozenset()


class Ledger:
    """The holder's in-memory copy of those fields, with bounded histories."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.restore(Meta())
        self.committed: set[str] = set()
        self.failed: set[str] = set()

    def load(self, record: Record) -> None:
        """Start from a freshly loaded record (everything in it is committed)."""
        self.restore(
            Meta(
                record.applied,
                record.purchases,
                (),
                record.outbox,
                user_ids=record.user_ids,
                tags=tuple(record.tags.items()),
            )
        )
        self.credit = dict(record.credit)
        self.committed = {m.id for m in record.outbox}
        self.failed = set()

    def snapshot(self) -> Meta:
        """The fields now, for a save (or for undoing a failed operation)."""
        return Meta(
            tuple(self.applied),
            tuple(self.purchases),
            tuple(self.credit.items()),
            tuple(self.outbox),
            frozenset(self.consumed) if self.consumed else _NONE,
            tuple(sorted(self.user_ids)) if self.user_ids else (),
            tuple(self.tags.items()),
        )

    def restore(self, meta: Meta) -> None:
        """Go back to ``meta`` (an operation raised halfway)."""
        self.applied = list(meta.applied)
        self.purchases = list(meta.purchases)
        self.credit = dict(meta.credit)
        self.outbox = list(meta.outbox)
        self.consumed = set(meta.consumed)
        self.user_ids = set(meta.user_ids)
        self.tags: dict[str, Any] = dict(meta.tags)

    def saved(self, meta: Meta) -> None:
        """A write holding ``meta`` committed."""
        self.consumed -= meta.consumed
        self.committed = {m.id for m in meta.outbox}

    # ------------------------------------------------------------------ histories

    def knows(self, op_id: str) -> bool:
        """``op_id`` is in the (bounded) history of applied operations."""
        return op_id in self.applied

    def add(self, op_id: str) -> None:
        """Record ``op_id`` as applied, forgetting the oldest beyond the limit."""
        self.applied.append(op_id)
        del self.applied[: -self.limit]

    def bought(self, purchase_id: str) -> bool:
        """``purchase_id`` is in the (bounded) purchase history."""
        return any(p.purchase_id == purchase_id for p in self.purchases)

    def buy(self, purchase: Purchase) -> None:
        """Record a granted purchase, forgetting the oldest beyond the limit."""
        self.purchases.append(purchase)
        del self.purchases[: -self.limit]

    # ------------------------------------------------------------------ outbox

    def deliverable(self) -> Message | None:
        """The first outbox message a committed write holds, not yet delivered."""
        for message in self.outbox:
            if message.id in self.committed and message.id not in self.failed:
                return message
        return None

    def uncommitted(self) -> bool:
        """Some outbox message is not in a committed write yet."""
        return any(m.id not in self.committed for m in self.outbox)

    def delivered(self, message_id: str) -> None:
        """The message is in its receiver's inbox (or was applied there): drop it."""
        self.outbox = [m for m in self.outbox if m.id != message_id]
