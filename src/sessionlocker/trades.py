"""Two-party trades without duplication, through escrow messages.

A trade between A (here, loaded) and B (anywhere, or offline) runs in three writes,
each exactly-once, so any crash between them leaves every item in exactly one place:

1. A's holder takes A's items out of A's data and commits, in the same write, an
   ``offer`` message to B carrying them (the items are now in escrow, in A's outbox).
2. B's holder applies the offer once: if B can give what A wants, it takes those from
   B, puts A's items into B, and commits a ``settle`` message back to A carrying B's
   items; if not, the ``settle`` message carries A's own items back (a refund).
3. A's holder applies the settle message once, putting its items into A.

Items in flight are in one outbox or inbox at a time, and each message is applied once
and removed in the write holding its effect, so no item is ever lost or doubled.
``take(data, items) -> bool`` must change nothing when it returns False.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sessionlocker.core.handles import Handle, Outcome, resolved
from sessionlocker.core.locker import Locker
from sessionlocker.core.record import Message
from sessionlocker.errors import UsageError
from sessionlocker.purchases import Service

__all__ = ["OFFER", "SETTLE", "Trades"]

OFFER = "sessionlocker.trade.offer"
SETTLE = "sessionlocker.trade.settle"

Take = Callable[[Any, Any], bool]
Put = Callable[[Any, Any], None]


class _Refused(Exception):
    """The offering side does not have what it offers."""


class Trades:
    """Exactly-once trades on one service's records (every server creates one).

    ``take(data, items)`` removes ``items`` from data and returns True, or changes
    nothing and returns False; ``put(data, items)`` adds them. ``settled(locker,
    trade_id, accepted)`` is called on A's side when a trade ends.
    """

    def __init__(
        self,
        service: Service,
        take: Take,
        put: Put,
        *,
        settled: Callable[[Locker, str, bool], None] | None = None,
    ) -> None:
        self.take, self.put, self.settled = take, put, settled
        self.service = service
        service.on_message(OFFER, self._offer_arrived)
        service.on_message(SETTLE, self._settle_arrived)

    def offer(self, trade_id: str, a: str, b: str, give: Any, want: Any) -> Handle[Outcome]:
        """A (loaded here) offers ``give`` for B's ``want``.

        The handle says whether the offer (with A's items in escrow) is committed:
        ``applied``, or ``not_done`` when A is not loaded here or lacks the items
        (``handle.error`` says which). The trade then completes on its own.
        """
        locker = self.service.get(a)
        if locker is None:
            return resolved(trade_id, Outcome.NOT_DONE, UsageError(f"{a!r} is not loaded here"))
        body = {"trade": trade_id, "from": a, "give": give, "want": want}

        def escrow(data: Any) -> None:
            if not self.take(data, give):
                raise _Refused(f"{a!r} does not have {give!r}")
            locker.send(b, OFFER, body, id=f"trade/{trade_id}/offer")

        try:
            return locker.apply_once(f"trade/{trade_id}", escrow)
        except _Refused as exc:
            return resolved(trade_id, Outcome.NOT_DONE, UsageError(str(exc)))

    def _offer_arrived(self, locker: Locker, message: Message) -> None:
        body = _body(message, ("trade", "from", "give", "want"))
        accepted = self.take(locker.data, body["want"])
        if accepted:
            self.put(locker.data, body["give"])
        items = body["want"] if accepted else body["give"]
        reply = {"trade": body["trade"], "accepted": accepted, "items": items}
        locker.send(body["from"], SETTLE, reply, id=f"trade/{body['trade']}/settle")

    def _settle_arrived(self, locker: Locker, message: Message) -> None:
        body = _body(message, ("trade", "accepted", "items"))
        self.put(locker.data, body["items"])
        if self.settled is not None:
            self.settled(locker, body["trade"], bool(body["accepted"]))


def _body(message: Message, names: tuple[str, ...]) -> dict[str, Any]:
    body = message.body
    if not isinstance(body, dict) or any(name not in body for name in names):
        raise UsageError(f"trade message {message.id!r} lacks one of {names}")
    return body
