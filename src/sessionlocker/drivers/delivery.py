"""``send`` for both drivers: the message, its transform, the retry rule and the verdict.

``LockerService.send`` blocks on a ``Store``; ``AsyncLockerService.send`` awaits an
``AsyncStore``. Everything but that wait lives here once: ``Delivery.build`` checks the
arguments and makes the ``deliver`` transform, ``next_delay`` is the retry rule (backoff
from ``core.backoff``, bounded by the caller's timeout), and ``Delivery.verdict`` turns
the committed outcome into the message id or the error to raise. The two loops that
remain (``deliver_now`` and ``adeliver``) only call, wait and retry.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessionlocker.core import transforms as tx
from sessionlocker.core.backoff import retry_delay
from sessionlocker.core.protocol import Transform, Updated
from sessionlocker.core.record import Message
from sessionlocker.core.spec import Spec, check_key
from sessionlocker.core.storable import check_storable, encode_data
from sessionlocker.errors import RecordTooLarge, StoreError, UsageError
from sessionlocker.stores.base import AsyncStore, Store

__all__ = ["Delivery", "adeliver", "deliver_now", "next_delay"]

#: The longest wait between two tries of a delivery.
RETRY_CAP = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One message on its way to ``key``'s inbox (``store_key`` in the store)."""

    spec: Spec
    key: str
    store_key: str
    message: Message
    transform: Transform[tx.DeliverOutcome]

    @classmethod
    def build(
        cls, spec: Spec, key: str, kind: str, body: Any, *, id: str | None, now: float
    ) -> Delivery:
        """Check the arguments of ``send`` (``UsageError``, ``UnstorableData``) and make
        the transform that appends the message, stamped ``now`` (wall seconds)."""
        check_key(key)
        if not isinstance(kind, str) or not kind:
            raise UsageError(f"a message kind must be a non-empty string, not {kind!r}")
        if id is not None and (not isinstance(id, str) or not id):
            raise UsageError(f"a message id must be a non-empty string, not {id!r}")
        check_storable(body)
        message = Message(id or uuid.uuid4().hex, kind, body, now)
        transform = tx.deliver(
            message=message,
            fresh=spec.fresh(None),
            fresh_json=encode_data(spec.create()),
            max_bytes=spec.max_record_bytes,
        )
        return cls(
            spec=spec,
            key=key,
            store_key=spec.store_key(key),
            message=message,
            transform=transform,
        )

    def verdict(self, outcome: tx.DeliverOutcome) -> str:
        """The message id once delivered; the data error when the record refused it."""
        if isinstance(outcome, tx.Refused):
            raise outcome.error
        if isinstance(outcome, tx.TooLarge):
            raise RecordTooLarge(outcome.size, self.spec.max_record_bytes)
        return self.message.id


def next_delay(key: str, failures: int, error: StoreError, left: float) -> float:
    """Seconds to wait before try ``failures + 1``, or re-raise ``error`` when it is not
    retryable or the wait would end past the ``left`` seconds of the timeout."""
    delay = retry_delay(key, failures, cap=RETRY_CAP, error=error)
    if not error.retryable or delay > left:
        raise error
    return delay


def deliver_now(
    store: Store, delivery: Delivery, timeout: float, clock: Callable[[], float]
) -> Updated[tx.DeliverOutcome]:
    """Run the delivery on ``store``, retrying retryable errors for up to ``timeout`` s."""
    deadline = clock() + timeout
    failures = 0
    while True:
        try:
            return store.update(delivery.store_key, delivery.transform)
        except StoreError as exc:
            failures += 1
            time.sleep(next_delay(delivery.key, failures, exc, deadline - clock()))


async def adeliver(
    store: AsyncStore, delivery: Delivery, timeout: float, clock: Callable[[], float]
) -> Updated[tx.DeliverOutcome]:
    """``deliver_now`` awaited on an ``AsyncStore``: the same tries and waits."""
    deadline = clock() + timeout
    failures = 0
    while True:
        try:
            return await store.update(delivery.store_key, delivery.transform)
        except StoreError as exc:
            failures += 1
            await asyncio.sleep(next_delay(delivery.key, failures, exc, deadline - clock()))
