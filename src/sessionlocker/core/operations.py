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
from typing import Any, Protocol

from sessionlocker.core.handles import Handle, Outcome
from sessionlocker.core.ledger import Ledger
from sessionlocker.core.patching import BUILTIN_HANDLERS
from sessionlocker.core.record import Message, Purchase
from sessionlocker.core.spec import check_key
from sessionlocker.core.states import Lifecycle, Status
from sessionlocker.core.storable import check_storable
from sessionlocker.errors import MessageError, SessionLockerError, UnhandledMessage, UsageError

__all__ = ["AnyHandler", "OperationCalls", "Operations", "Port"]

#: A remote-change handler as ``Operations`` calls it: ``handler(port.owner, message)``
#: (typed with the locker as ``sessionlocker.core.locker.Handler``).
AnyHandler = Callable[[Any, Message], object]

_Queued = tuple[str, Callable[[Any], object], str | None, Handle[Outcome]]


class Port(Protocol):
    """What ``Operations`` and the ledger's user-id and tag calls see of their locker:
    a few facts and calls, not the locker (``Locker`` hands out one, ``locker._port``).
    """

    #: the locker's data (read, and put back when an operation is undone)
    data: Any

    @property
    def key(self) -> str: ...
    @property
    def status(self) -> Status: ...
    @property
    def token(self) -> int | None: ...
    @property
    def error(self) -> SessionLockerError | None: ...
    @property
    def owner(self) -> Any:
        """The locker itself, as message handlers get it."""

    @property
    def loading(self) -> bool:
        """Loading or waiting: operations asked for now run on the loaded data."""

    @property
    def writable(self) -> bool:
        """Data and ledger changes made now will be in a save of this lock."""

    @property
    def lease_id(self) -> str:
        """The lease this locker holds (or seeks) the lock for."""

    def wall(self) -> float:
        """Wall-clock time for timestamps in the record (from the driver)."""

    def report(self, error: SessionLockerError) -> None:
        """Record ``error`` and fire ``error`` at the next callback point."""

    def emit_later(self, event: Lifecycle) -> None:
        """Fire ``event`` at the next callback point."""

    def mark_changed(self) -> int: ...
    def force_save(self) -> None: ...
    def when_saved(self, change_id: int, callback: Callable[[bool], None]) -> None: ...
    def edit_meta(self, change: Callable[[], object]) -> int:
        """Make ``change`` to the ledger now, and again on the loaded record."""


class Operations:
    """The exactly-once side of one locker (see the module docstring)."""

    def __init__(self, port: Port, handlers: Mapping[str, AnyHandler], history_limit: int) -> None:
        self.port = port
        self.ledger = Ledger(history_limit)
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
        port = self.port
        if port.loading:
            self.queued.append((op_id, fn, product, handle))
        elif not port.writable:
            error = UsageError(f"{port.key!r} is {port.status.value}, not loaded")
            handle.resolve(Outcome.NOT_DONE, error)
        else:
            self._run(op_id, fn, product, handle)
        return handle

    def _run(
        self, op_id: str, fn: Callable[[Any], object], product: str | None, handle: Handle[Outcome]
    ) -> None:
        ledger, port = self.ledger, self.port
        seen = ledger.bought(op_id) if product is not None else ledger.knows(op_id)
        if seen:
            change = self.changes.get((product, op_id))
            if change is None:  # it came with the loaded record: committed
                handle.resolve(Outcome.ALREADY_APPLIED)
            else:
                self._answer(handle, change, Outcome.ALREADY_APPLIED)
            return
        self.undoable(lambda: fn(port.data))
        if product is None:
            ledger.add(op_id)
        else:
            ledger.buy(Purchase(product, op_id, port.wall()))
        change = port.mark_changed()
        self.changes[(product, op_id)] = change
        port.force_save()
        self._answer(handle, change, Outcome.APPLIED)

    def _answer(self, handle: Handle[Outcome], change: int, outcome: Outcome) -> None:
        def saved(ok: bool) -> None:
            handle.resolve(outcome if ok else Outcome.NOT_DONE, None if ok else self.port.error)

        self.port.when_saved(change, saved)

    def replay(self) -> None:
        """Run the operations queued while loading, on the loaded data."""
        queued, self.queued = self.queued, []
        for op_id, fn, product, handle in queued:
            try:
                self._run(op_id, fn, product, handle)
            except Exception as exc:  # the user's operation; it was undone
                error = UsageError(f"operation {op_id!r} failed on the loaded data: {exc!r}")
                handle.resolve(Outcome.NOT_DONE, error)
                self.port.report(error)

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
        port = self.port
        data, meta = copy.deepcopy(port.data), self.ledger.snapshot()
        try:
            action()
        except BaseException:
            self.ledger.restore(meta)
            port.data = _put_back(port.data, data)
            raise

    def edit_ledger(self, change: Callable[[Ledger], object], what: str) -> int:
        """Change the ledger's user ids or tags; returns the change id for ``when_saved``.

        Allowed while loading (made again on the loaded record, whose load replaces the
        ledger, even with ``merge_offline``) or loaded; raises ``UsageError`` otherwise.
        """
        port = self.port
        if not (port.loading or port.writable):
            raise UsageError(f"cannot {what}: {port.key!r} is {port.status.value}, not loaded")
        return port.edit_meta(lambda: change(self.ledger))

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
        self.port.mark_changed()
        self.port.emit_later(Lifecycle.CREDIT)

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
            message_id = f"{self.port.lease_id}/{self.port.token}/{self.sent}"
        elif not isinstance(message_id, str) or not message_id:
            raise UsageError(f"a message id must be a non-empty string, not {message_id!r}")
        if all(m.id != message_id for m in self.ledger.outbox):
            message = Message(message_id, kind, body, self.port.wall(), to=to)
            self.ledger.outbox.append(message)
            self.port.mark_changed()
            self.port.force_save()
        return message_id

    def _check_writable(self, what: str) -> None:
        port = self.port
        if not port.writable:
            raise UsageError(f"cannot {what}: {port.key!r} is {port.status.value}, not loaded")

    # ------------------------------------------------------------------ inbox

    def take(self, inbox: tuple[Message, ...]) -> None:
        """Apply, once each, the inbox messages not applied yet."""
        ledger, port = self.ledger, self.port
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
                port.report(UnhandledMessage(text, kind=message.kind, message_id=message.id))
                continue
            try:
                self.undoable(functools.partial(handler, port.owner, message))
            except Exception as exc:  # the user's handler; undone, left in the inbox
                ledger.failed.add(message.id)
                text = f"handler for {message.kind!r} failed on {message.id!r}: {exc!r}"
                port.report(MessageError(text, kind=message.kind, message_id=message.id))
                continue
            ledger.consumed.add(message.id)
            ledger.add(message.id)
            changed = True
        if changed:
            port.mark_changed()
            port.force_save()


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
