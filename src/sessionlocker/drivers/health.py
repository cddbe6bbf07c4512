"""Store health: is the store failing? (ProfileService's ``IsCriticalState``.)

A ``LockerService`` sees the result of every store call its frames make (loads, saves,
deliveries, lease renewals, reads of other sessions' leases). ``StoreHealth`` counts the
failed ones: the service enters the *critical* state when ``errors`` calls failed
within the last ``window`` seconds, and leaves it at the next call that succeeds (the
count starts again from zero then, so it takes ``errors`` new failures to enter again).
Each failure is also handed to the service's ``on_store_error`` callbacks as a
``StoreFailure``: which operation, on which key, with which error.

No clock is read here: the service passes ``now`` in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from sessionlocker.core.states import RequestKind
from sessionlocker.errors import StoreError, UsageError

__all__ = ["OPERATIONS", "StoreFailure", "StoreHealth"]

#: The ``operation`` of a ``StoreFailure``, by the kind of request that failed.
OPERATIONS: dict[str, str] = {
    RequestKind.ACQUIRE: "load",
    RequestKind.CONFIRM: "load",
    RequestKind.SAVE: "save",
    RequestKind.LEASE: "read lease",
    RequestKind.REQUEST: "release request",
    RequestKind.DELIVER: "deliver",
    RequestKind.WITHDRAW: "withdraw",
    RequestKind.FENCE: "withdraw",
    "lease": "renew lease",
    "mailbox": "mailbox",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFailure:
    """One failed store call of a service's frames.

    ``operation`` is one of ``OPERATIONS``' values; ``key`` is the key of the locker
    whose call failed (``None`` for the service's own lease); ``at`` is the service's
    clock (monotonic seconds) when the failure was seen.
    """

    operation: str
    key: str | None
    error: StoreError
    at: float


class StoreHealth:
    """The critical state of one service's store (see the module docstring)."""

    def __init__(self, errors: int = 5, window: float = 30.0) -> None:
        if not isinstance(errors, int) or isinstance(errors, bool) or errors < 1:
            raise UsageError(f"critical_errors must be a whole number >= 1, not {errors!r}")
        if not isinstance(window, int | float) or not math.isfinite(window) or window <= 0:
            raise UsageError(f"critical_window must be positive seconds, not {window!r}")
        self.errors = errors
        self.window = float(window)
        self.critical = False
        self._failed: deque[float] = deque()

    def failed(self, now: float) -> bool:
        """A call failed at ``now``; True when that made the state critical."""
        self._failed.append(now)
        while self._failed[0] < now - self.window:
            self._failed.popleft()
        if self.critical or len(self._failed) < self.errors:
            return False
        self.critical = True
        return True

    def succeeded(self) -> bool:
        """A call succeeded; True when that ended the critical state."""
        if not self.critical:
            return False
        self.critical = False
        self._failed.clear()
        return True
