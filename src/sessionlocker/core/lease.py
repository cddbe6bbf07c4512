"""The lease of one service: one small record, renewed every third of its TTL.

Locks name a session; a lock may be taken over once its session's lease has expired in
the store. The holder fences itself first: it stops reporting its lockers available
when it could not renew within the *renew deadline*, two thirds of the TTL counted from
when its last successful renewal was *sent*. The store expires the lease no earlier
than one TTL after it *received* that renewal, so the holder goes quiet before any
other session may take over (given clocks that run at nearly the same rate).

When renewals keep failing and a whole TTL has passed since the last successful
renewal's reply came back, the store has let the lease expire, so another session may
have taken any of its locks: the lease has *lapsed* (``lapsed``), and the lockers that
held a lock under it give up as ``lost`` instead of waiting for a store that does not
answer.

No I/O here: ``update(now)`` returns the ``PutLease`` to send, ``handle`` takes its
result. The clocks are passed in by the driver.
"""

from __future__ import annotations

from collections.abc import Callable

from sessionlocker.core.backoff import retry_delay
from sessionlocker.core.protocol import DropLease, PutLease
from sessionlocker.errors import StoreError

__all__ = ["Lease"]

#: Share of the TTL after which a holder that could not renew stops being available.
RENEW_DEADLINE = 2 / 3
#: Renewals that must fail in a row (past a TTL since the last success) to lapse a lease.
LAPSE_FAILURES = 3


class Lease:
    """The lease of ``lease_id``. ``clock`` is monotonic; ``wall`` is for records."""

    def __init__(
        self,
        lease_id: str,
        ttl: float,
        info: bytes,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.lease_id = lease_id
        self.ttl = ttl
        self.info = info
        self.clock = clock
        self.wall = wall
        self.closed = False
        self._sending_since: float | None = None
        self._renewed_sent: float | None = None
        self._renewed_reply: float | None = None
        self._renew_at = float("-inf")
        self._failures = 0
        #: Times the lease lapsed locally before a renewal's reply came back. A lapse
        #: lets another session take over, so lockers must re-check their locks.
        self.gaps = 0
        #: The last renewal's error; ``None`` once a renewal succeeds.
        self.error: StoreError | None = None
        self._waiting: list[Callable[[], None]] = []

    def when_available(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once, the next time a renewal succeeds or fails (a waiting
        load reports each failure as it comes, and gives up on one no retry can mend)."""
        self._waiting.append(callback)

    def failed(self) -> StoreError | None:
        """The last renewal's error when retrying cannot mend it (not ``retryable``: a
        refused password or certificate, say); None otherwise. Renewals go on."""
        error = self.error
        return error if error is not None and not error.retryable else None

    def available(self, now: float | None = None) -> bool:
        """True while the last successful renewal was sent less than the deadline ago."""
        if self._renewed_sent is None or self.closed:
            return False
        at = self.clock() if now is None else now
        return at < self._renewed_sent + self.ttl * RENEW_DEADLINE

    def lapsed(self, now: float) -> bool:
        """True when the last ``LAPSE_FAILURES`` renewals failed and a whole TTL has
        passed since the last successful renewal's reply: the store has expired the
        lease (another session may hold our locks now) and is still failing. A renewal
        that is only slow, or a failure or two of an overloaded store, does not lapse the
        lease: when a renewal succeeds the lockers re-check their locks (``gaps``)."""
        reply = self._renewed_reply
        if reply is None or self.closed or self._failures < LAPSE_FAILURES:
            return False
        return now >= reply + self.ttl

    def next_deadline(self) -> float | None:
        """When ``update`` has something to do; ``None`` while a renewal is in flight."""
        if self._sending_since is not None or self.closed:
            return None
        return self._renew_at

    def update(self, now: float) -> PutLease | None:
        """The renewal to send now, if one is due."""
        if self.closed or self._sending_since is not None or now < self._renew_at:
            return None
        self._sending_since = now
        return PutLease(lease_id=self.lease_id, ttl=self.ttl, info=self.info)

    def handle(self, error: StoreError | None, now: float) -> None:
        """The result of the renewal sent by ``update``."""
        sent = self._sending_since
        if sent is None:
            return
        self._sending_since = None
        if error is None:
            if self._renewed_sent is not None and not self.available(now):
                self.gaps += 1
            self._failures = 0
            self.error = None
            self._renewed_sent = sent
            self._renewed_reply = now
            self._renew_at = sent + self.ttl / 3
            self._call_waiting()
            return
        self._failures += 1
        self.error = error
        delay = retry_delay(self.lease_id, self._failures, cap=self.ttl / 6, error=error)
        self._renew_at = now + delay
        self._call_waiting()

    def _call_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()

    def close(self) -> DropLease:
        """Stop renewing; the request removes the lease record."""
        self.closed = True
        return DropLease(lease_id=self.lease_id)
