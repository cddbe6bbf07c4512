"""Purchases, granted exactly once: the ProcessReceipt contract, platform-neutral.

A store platform (Roblox, Steam, a payment provider) delivers a receipt and retries
until it is told the purchase was granted. ``Purchaser.submit(receipt)`` answers
``granted`` only once the grant and the purchase id are in one committed write of the
buyer's record, and ``not_processed_yet`` whenever that cannot be known here (the
buyer's locker is not loaded in this service, or its save failed): the platform then
retries later, maybe on another server, and the purchase history in the record stops
a second grant. A gift (a receipt with another ``recipient``) commits the purchase and
a message to the recipient in the buyer's write; the recipient's holder, or its next
loader, grants it once (see ``Locker.send``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from sessionlocker.core.handles import Handle, Outcome
from sessionlocker.core.locker import Handler, Locker
from sessionlocker.core.record import Message
from sessionlocker.core.states import Status
from sessionlocker.errors import SessionLockerError, UsageError
from sessionlocker.metrics import NO_METRICS, Metrics

__all__ = ["GIFT", "Credit", "Decision", "Purchaser", "Receipt"]

#: The message kind that carries gifts to their recipient.
GIFT = "sessionlocker.gift"

log = logging.getLogger("sessionlocker.purchases")


class Decision(StrEnum):
    """The answer for the platform (Roblox's ``ProductPurchaseDecision``)."""

    GRANTED = "granted"
    NOT_PROCESSED_YET = "not_processed_yet"


@dataclass(frozen=True, slots=True)
class Credit:
    """Returned by a grant function: store ``amount`` credit of the product instead."""

    amount: int = 1


@dataclass(frozen=True, slots=True)
class Receipt:
    """One purchase. Ids are kept as strings (Roblox's numeric ids are converted)."""

    purchase_id: str
    product_id: str
    buyer: str
    recipient: str | None = None
    user_data: Any = None

    @classmethod
    def parse(cls, value: Receipt | Mapping[str, Any]) -> Receipt:
        """A ``Receipt``, or a mapping with ``purchase_id``, ``product_id`` and ``buyer``
        (Roblox's ``PurchaseId``, ``ProductId``, ``PlayerId`` too); ``recipient`` and
        ``user_data`` are optional. Raises ``UsageError`` naming what is missing.
        """
        if isinstance(value, Receipt):
            return value
        if not isinstance(value, Mapping):
            raise UsageError(f"a receipt is a Receipt or a mapping, not {type(value).__name__}")
        fields = {}
        for name, roblox in (
            ("purchase_id", "PurchaseId"),
            ("product_id", "ProductId"),
            ("buyer", "PlayerId"),
        ):
            raw = value.get(name, value.get(roblox))
            if not isinstance(raw, str | int) or isinstance(raw, bool) or raw == "":
                raise UsageError(f"receipt needs {name!r} (or {roblox!r}), found {raw!r}")
            fields[name] = str(raw)
        recipient = value.get("recipient")
        if recipient is not None and (not isinstance(recipient, str | int) or recipient == ""):
            raise UsageError(f"receipt 'recipient' must be a key, not {recipient!r}")
        return cls(
            fields["purchase_id"],
            fields["product_id"],
            fields["buyer"],
            None if recipient is None else str(recipient),
            value.get("user_data"),
        )


#: ``grant(data, receipt)`` changes the (buyer's or recipient's) data; it may return
#: ``Credit(n)`` to store product credit instead.
Grant = Callable[[Any, Receipt], object]


class Service(Protocol):
    """What a purchaser needs of a service (``LockerService`` or ``AsyncLockerService``)."""

    def get(self, key: str) -> Locker | None: ...

    def on_message(self, kind: str, handler: Handler) -> None: ...


@runtime_checkable
class FrameService(Service, Protocol):
    """A service that ``process`` can drive itself (``LockerService``)."""

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool: ...


class Purchaser:
    """Grants purchases through ``grant``, exactly once per purchase id.

    ``key_for(player_id)`` maps a buyer or recipient to its locker key (default: the
    id itself). Creating a purchaser registers the gift handler on the service, so every
    server that may hold a recipient must create one. Answers are counted in
    ``metrics`` (default: the service's) and logged to ``sessionlocker.purchases``.
    """

    def __init__(
        self,
        service: Service,
        grant: Grant,
        *,
        key_for: Callable[[str], str] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if not callable(grant):
            raise UsageError(f"grant must be callable, not {grant!r}")
        self.service = service
        self.grant = grant
        self.key_for = key_for or (lambda player: player)
        self._incomplete: set[Handle[Decision]] = set()
        self.metrics: Metrics = metrics or getattr(service, "metrics", None) or NO_METRICS
        service.on_message(GIFT, self._gift_arrived)

    def submit(self, receipt: Receipt | Mapping[str, Any]) -> Handle[Decision]:
        """Start granting; the handle resolves when the answer is known (frame loops)."""
        parsed = Receipt.parse(receipt)
        handle: Handle[Decision] = Handle(parsed.purchase_id)
        buyer = self.key_for(parsed.buyer)
        handle.on_done(lambda decision: self._answered(parsed, buyer, handle))
        locker = self.service.get(buyer)
        if locker is None or locker.status is not Status.LOADED:
            handle.resolve(Decision.NOT_PROCESSED_YET)
            return handle
        recipient = None if parsed.recipient is None else self.key_for(parsed.recipient)
        if recipient is None or recipient == buyer:
            apply = self._granting(locker, parsed)
        else:
            body = asdict(parsed)
            gift_id = f"gift/{parsed.purchase_id}"

            def apply(_: Any) -> None:
                locker.send(recipient, GIFT, body, id=gift_id)

        try:
            done = locker.purchase(parsed.product_id, parsed.purchase_id, apply)
        except Exception as exc:  # the grant raised; it was undone, the platform retries
            error = exc if isinstance(exc, SessionLockerError) else UsageError(repr(exc))
            handle.resolve(Decision.NOT_PROCESSED_YET, error)
            return handle
        self._incomplete.add(handle)

        def answer(outcome: Outcome) -> None:
            self._incomplete.discard(handle)
            granted = outcome in (Outcome.APPLIED, Outcome.ALREADY_APPLIED)
            handle.resolve(Decision.GRANTED if granted else Decision.NOT_PROCESSED_YET, done.error)

        done.on_done(answer)
        return handle

    def process(self, receipt: Receipt | Mapping[str, Any], timeout: float = 10.0) -> Decision:
        """Grant and wait (driving the service, as ``session()`` does) for the answer.

        ``not_processed_yet`` after ``timeout`` seconds; the grant may still commit
        later, and a retried receipt then finds it in the history.
        """
        if not isinstance(self.service, FrameService):
            raise UsageError("this service runs its own frames: use await process_async()")
        handle = self.submit(receipt)
        self.service.run_until(lambda: handle.done, timeout)
        return handle.result or Decision.NOT_PROCESSED_YET

    async def process_async(
        self, receipt: Receipt | Mapping[str, Any], timeout: float = 10.0
    ) -> Decision:
        """``process`` for ``AsyncLockerService``: its frame task resolves the answer."""
        handle = self.submit(receipt)
        if not handle.done:
            answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def answer(_: Decision) -> None:
                if not answered.done():
                    answered.set_result(None)

            handle.on_done(answer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered, timeout)
        return handle.result or Decision.NOT_PROCESSED_YET

    def has_incomplete(self) -> bool:
        """A submitted purchase is still waiting for its save (wait before shutting down)."""
        return bool(self._incomplete)

    def _answered(self, receipt: Receipt, buyer: str, handle: Handle[Decision]) -> None:
        granted = handle.result is Decision.GRANTED
        self.metrics.count("purchases", {"result": "granted" if granted else "deferred"})
        level = logging.INFO if granted else logging.DEBUG
        if log.isEnabledFor(level):
            session = getattr(self.service, "lease_id", None)
            spec = getattr(self.service, "spec", None)
            key = buyer if spec is None else spec.store_key(buyer)
            why = "" if handle.error is None else f" ({type(handle.error).__name__})"
            log.log(
                level,
                "key=%s session=%s purchase %s of product %s %s%s",
                key,
                session,
                receipt.purchase_id,
                receipt.product_id,
                "granted" if granted else "deferred",
                why,
                extra={"key": key, "session": session},
            )

    def _granting(self, locker: Locker, receipt: Receipt) -> Callable[[Any], None]:
        def apply(data: Any) -> None:
            result = self.grant(data, receipt)
            if isinstance(result, Credit):
                locker.credit_give(receipt.product_id, result.amount)

        return apply

    def _gift_arrived(self, locker: Locker, message: Message) -> None:
        body = message.body
        if not isinstance(body, dict):
            raise UsageError(f"gift {message.id!r} has no receipt: {json.dumps(body)[:80]}")
        self._granting(locker, Receipt.parse(body))(locker.data)
