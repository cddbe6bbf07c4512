"""Exactly-once operations of a loaded locker: ``apply_once``, purchases, product credit,
the outbox and the inbox.

Every operation changes the data and the locker's ``Ledger`` together, in memory, and
is answered only when a committed save holds both; an operation that raises is undone
(data and ledger put back) so nothing half-applied is ever saved. The locker owns one
``Operations`` and delegates its public calls here; this module does no I/O either.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sessionlocker.core.handles import Handle, Outcome
from sessionlocker.core.ledger import Ledger
from sessionlocker.core.patching import BUILTIN_HANDLERS
from sessionlocker.core.record import Message, Purchase
from sessionlocker.core.spec import check_key
from sessionlocker.core.states import Lifecycle
from sessionlocker.core.storable import check_storable
from sessionlocker.errors import MessageError, SessionLockerError, UnhandledMessage, UsageError

if TYPE_CHECKING:
    from sessionlocker.core.locker import Locker

__all__ = ["Handler", "OperationCalls", "Operations"]

#: A remote-change handler: ``handler(locker, message)`` changes ``locker.data`` (and may
#: use the locker's credit and ``send``); all of it is saved in one write.
Handler = Callable[["Locker", Message], object]

_Queued = tuple[str, Callable[[Any], object], str | None, Handle[Outcome]]


class Operations:
    """The exactly-once side of one locker (see the module docstring)."""

    def __init__(self, locker: Locker, handlers: Mapping[str, Handler]) -> None:
        self.locker = locker
        self.ledger = Ledger(locker.spec.history_limit)
        self.handlers = handlers
        self.queued: list[_Queued] = []
        self.changes: dict[tuple[str | None, str], int] = {}
        self.sent = 0

    # ------------------------------------------------------------------ operations

    def once(self, op_id: str, fn: Callable[[Any], object], product: str | None) -> Handle[Outcome]:
        """Apply ``fn`` unless ``op_id`` (a purchase id when ``product`` is set) is known."""
        if not isinstance(op_id, str) or not op_id:
            raise UsageError(f"an operation id must be a non-empty string, not {op_id!r}")
        handle: Handle[Outcome] = Handle(op_id)
        locker = self.locker
        if locker.loading:
            self.queued.append((op_id, fn, product, handle))
        elif not locker.writable:
            error = UsageError(f"{locker.key!r} is {locker.status.value}, not loaded")
            handle.resolve(Outcome.NOT_DONE, error)
        else:
            self._run(op_id, fn, product, handle)
        return handle

    def _run(
        self, op_id: str, fn: Callable[[Any], object], product: str | None, handle: Handle[Outcome]
    ) -> None:
        ledger, locker = self.ledger, self.locker
        seen = ledger.bought(op_id) if product is not None else ledger.knows(op_id)
        if seen:
            change = self.changes.get((product, op_id))
            if change is None:  # it came with the loaded record: committed
                handle.resolve(Outcome.ALREADY_APPLIED)
            else:
                self._answer(handle, change, Outcome.ALREADY_APPLIED)
            return
        self.undoable(lambda: fn(locker.data))
        if product is None:
            ledger.add(op_id)
        else:
            ledger.buy(Purchase(product, op_id, locker.wall()))
        change = locker.mark_changed()
        self.changes[(product, op_id)] = change
        locker.force_save()
        self._answer(handle, change, Outcome.APPLIED)

    def _answer(self, handle: Handle[Outcome], change: int, outcome: Outcome) -> None:
        def saved(ok: bool) -> None:
            handle.resolve(outcome if ok else Outcome.NOT_DONE, None if ok else self.locker.error)

        self.locker.when_saved(change, saved)

    def replay(self) -> None:
        """Run the operations queued while loading, on the loaded data."""
        queued, self.queued = self.queued, []
        for op_id, fn, product, handle in queued:
            try:
                self._run(op_id, fn, product, handle)
            except Exception as exc:  # the user's operation; it was undone
                error = UsageError(f"operation {op_id!r} failed on the loaded data: {exc!r}")
                handle.resolve(Outcome.NOT_DONE, error)
                self.locker.report(error)

    def drop_queued(self, error: SessionLockerError | None) -> None:
        """The load ended without data: queued operations are not done."""
        queued, self.queued = self.queued, []
        for _, _, _, handle in queued:
            handle.resolve(Outcome.NOT_DONE, error)

    def undoable(self, action: Callable[[], object]) -> None:
        """Run ``action``; if it raises, put data and ledger back as they were, and re-raise.

        The data is copied first (``copy.deepcopy``), so keep operations to records of
        reasonable size; the root object stays the same object when it is a dict or list.
        """
        locker = self.locker
        data, meta = copy.deepcopy(locker.data), self.ledger.snapshot()
        try:
            action()
        except BaseException:
            self.ledger.restore(meta)
            locker.data = _put_back(locker.data, data)
            raise

    # ------------------------------------------------------------------ credit

    def credit_query(self, product: str | int) -> int:
        """Unused credit of ``product``."""
        return self.ledger.credit.get(str(product), 0)

    def credit_give(self, product: str | int, n: int) -> int:
        """Add ``n`` credit; returns the new amount."""
        name = self._credit_change(product, n)
        total = self.ledger.credit.get(name, 0) + n
        self.ledger.credit[name] = total
        self._credit_changed()
        return total

    def credit_use(self, product: str | int, n: int) -> bool:
        """Take ``n`` credit if there is that much (True); else change nothing (False)."""
        name = self._credit_change(product, n)
        total = self.ledger.credit.get(name, 0)
        if total < n:
            return False
        if total == n:
            del self.ledger.credit[name]
        else:
            self.ledger.credit[name] = total - n
        self._credit_changed()
        return True

    def _credit_change(self, product: str | int, n: int) -> str:
        self._check_writable("change credit")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UsageError(f"a credit amount must be a whole number >= 1, not {n!r}")
        if not isinstance(product, str | int) or isinstance(product, bool) or product == "":
            raise UsageError(f"a product id must be a non-empty string or int, not {product!r}")
        return str(product)

    def _credit_changed(self) -> None:
        self.locker.mark_changed()
        self.locker.emit_later(Lifecycle.CREDIT)

    # ------------------------------------------------------------------ outbox

    def send(self, to: str, kind: str, body: Any, message_id: str | None) -> str:
        """Queue a message to ``to``'s inbox, delivered once this locker's save commits."""
        self._check_writable("send")
        check_key(to)
        if not isinstance(kind, str) or not kind:
            raise UsageError(f"a message kind must be a non-empty string, not {kind!r}")
        check_storable(body)
        if message_id is None:
            self.sent += 1
            message_id = f"{self.locker.lease_id}/{self.locker.token}/{self.sent}"
        elif not isinstance(message_id, str) or not message_id:
            raise UsageError(f"a message id must be a non-empty string, not {message_id!r}")
        if all(m.id != message_id for m in self.ledger.outbox):
            message = Message(message_id, kind, body, self.locker.wall(), to=to)
            self.ledger.outbox.append(message)
            self.locker.mark_changed()
            self.locker.force_save()
        return message_id

    def _check_writable(self, what: str) -> None:
        locker = self.locker
        if not locker.writable:
            raise UsageError(f"cannot {what}: {locker.key!r} is {locker.status.value}, not loaded")

    # ------------------------------------------------------------------ inbox

    def take(self, inbox: tuple[Message, ...]) -> None:
        """Apply, once each, the inbox messages not applied yet."""
        ledger, locker = self.ledger, self.locker
        changed = False
        for message in inbox:
            if message.id in ledger.consumed or message.id in ledger.failed:
                continue
            if ledger.knows(message.id):  # a duplicate of one applied before: drop it
                ledger.consumed.add(message.id)
                changed = True
                continue
            handler = self.handlers.get(message.kind) or BUILTIN_HANDLERS.get(message.kind)
            if handler is None:  # left in the inbox for code that knows the kind
                ledger.failed.add(message.id)
                text = f"no handler for messages of kind {message.kind!r}"
                locker.report(UnhandledMessage(text, kind=message.kind, message_id=message.id))
                continue
            try:
                self.undoable(functools.partial(handler, locker, message))
            except Exception as exc:  # the user's handler; undone, left in the inbox
                ledger.failed.add(message.id)
                text = f"handler for {message.kind!r} failed on {message.id!r}: {exc!r}"
                locker.report(MessageError(text, kind=message.kind, message_id=message.id))
                continue
            ledger.consumed.add(message.id)
            ledger.add(message.id)
            changed = True
        if changed:
            locker.mark_changed()
            locker.force_save()


class OperationCalls:
    """The public exactly-once calls of ``Locker``, kept beside their implementation."""

    _ops: Operations

    def apply_once(self, op_id: str, fn: Callable[[Any], object]) -> Handle[Outcome]:
        """Apply ``fn(data)`` unless ``op_id`` is in the record's history; record it with it.

        The handle resolves to ``applied`` (or ``already_applied``) only once a committed
        write holds the operation, and to ``not_done`` if the session ends first or the
        locker is not loaded. Called while loading, it runs on the loaded data. If ``fn``
        raises, data and history are put back and the exception propagates.
        """
        return self._ops.once(op_id, fn, None)

    def purchase(
        self, product_id: str | int, purchase_id: str, fn: Callable[[Any], object]
    ) -> Handle[Outcome]:
        """``apply_once`` keyed by ``purchase_id`` in the purchase history (product, id, time)."""
        return self._ops.once(purchase_id, fn, str(product_id))

    def credit_query(self, product: str | int) -> int:
        """Unused credit of ``product`` (saved with the data)."""
        return self._ops.credit_query(product)

    def credit_give(self, product: str | int, n: int) -> int:
        """Add ``n`` credit of ``product``; returns the new amount (fires ``credit``)."""
        return self._ops.credit_give(product, n)

    def credit_use(self, product: str | int, n: int = 1) -> bool:
        """Take ``n`` credit if there is that much (True, fires ``credit``), else False."""
        return self._ops.credit_use(product, n)

    def send(self, to: str, kind: str, body: Any, *, id: str | None = None) -> str:
        """Put a message for ``to`` (a key of this spec) in this record's outbox.

        It is committed with this locker's next save, then delivered to ``to``'s inbox
        and applied there exactly once. Returns the message id.
        """
        return self._ops.send(to, kind, body, id)

    @property
    def purchases(self) -> list[tuple[str, str, float]]:
        """The purchase history: (product id, purchase id, time), oldest first."""
        return [(p.product_id, p.purchase_id, p.at) for p in self._ops.ledger.purchases]

    @property
    def outbox(self) -> list[Message]:
        """Messages sent from here and not yet delivered."""
        return list(self._ops.ledger.outbox)


def _put_back(current: Any, saved: Any) -> Any:
    """``saved`` as the data, keeping the root object when it is a dict or a list."""
    if isinstance(current, dict) and isinstance(saved, dict):
        current.clear()
        current.update(saved)
        return current
    if isinstance(current, list) and isinstance(saved, list):
        current[:] = saved
        return current
    return saved
