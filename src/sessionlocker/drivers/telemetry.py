"""What a ``LockerService`` tells operators: log lines and metrics about its lockers.

The core does no I/O and reads no clock, so it neither logs nor measures; it fires
lifecycle events (``loaded``, ``handoff``, ``takeover``, ``replaced``, ``lost``, ...).
``Telemetry`` listens to them on each locker the service makes, sees every store
request's result and how long it took, and turns both into log lines (logger
``sessionlocker.locker`` for lockers, ``sessionlocker.service`` for the service) and
``Metrics`` calls. Every line names the store key and the session id, in its text and
as the ``key`` and ``session`` attributes of the log record (``extra``).

Nothing here logs data: a data error is logged by its class name only, as its message
(and even its path: dict keys can be user data) may quote the data; any other error by
its class name and message (a store error's message is scrubbed of passwords by each
store).
Work is done only when something happens to a locker, never per idle locker per frame.
"""

from __future__ import annotations

import logging
import threading

from sessionlocker.core import transforms as tx
from sessionlocker.core.locker import Locker
from sessionlocker.core.protocol import PutLease, ReadLease, Request, Update, Updated
from sessionlocker.core.states import Lifecycle, Status
from sessionlocker.drivers.health import StoreHealth
from sessionlocker.errors import DataError, StoreError
from sessionlocker.metrics import NO_METRICS, Metrics, NoMetrics, store_error_kind

__all__ = ["Telemetry", "describe", "locker_log", "service_log"]

locker_log = logging.getLogger("sessionlocker.locker")
service_log = logging.getLogger("sessionlocker.service")

_COUNTED = frozenset({Status.LOADING, Status.WAITING, Status.LOADED, Status.RELEASING})


class Telemetry:
    """Logs and metrics for the lockers of one service (session ``lease_id``)."""

    def __init__(self, metrics: Metrics | None, lease_id: str) -> None:
        self.metrics: Metrics = NO_METRICS if metrics is None else metrics
        self.lease_id = lease_id
        self._measuring = not isinstance(self.metrics, NoMetrics)
        self._states: dict[Locker, Status] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lockers

    def attach(self, locker: Locker) -> None:
        """Listen to ``locker``'s lifecycle events (once, when the service makes it)."""
        for event, react in (
            (Lifecycle.LOADED, self._loaded),
            (Lifecycle.SAVED, self._saved),
            (Lifecycle.HANDOFF, self._handoff),
            (Lifecycle.TAKEOVER, self._takeover),
            (Lifecycle.REPLACED, self._replaced),
            (Lifecycle.RELEASED, self._released),
            (Lifecycle.LOST, self._lost),
            (Lifecycle.FAILED, self._failed),
            (Lifecycle.ERROR, self._error),
        ):
            locker.on(event, react)

    def track(self, locker: Locker) -> None:
        """Count ``locker`` under its current state (after the service touched it)."""
        if not self._measuring:
            return
        state = locker.status if locker.status in _COUNTED else None
        with self._lock:
            before = self._states.get(locker)
            if before is state:
                return
            if state is None:
                del self._states[locker]
            else:
                self._states[locker] = state
        if before is not None:
            self.metrics.add("lockers", -1, {"state": before.value})
        if state is not None:
            self.metrics.add("lockers", 1, {"state": state.value})

    def _loaded(self, locker: Locker) -> None:
        self._say(locker, logging.DEBUG, "loaded with token %s", locker.token)

    def _saved(self, locker: Locker) -> None:
        self.metrics.count("saves")

    def _handoff(self, locker: Locker) -> None:
        self.metrics.count("handoffs", {"direction": "in"})
        self._say(locker, logging.INFO, "loaded after its holder released it on request")

    def _takeover(self, locker: Locker) -> None:
        self.metrics.count("takeovers")
        self._say(locker, logging.WARNING, "took the lock from a session that did not release it")

    def _replaced(self, locker: Locker) -> None:
        self.metrics.count("handoffs", {"direction": "out"})
        self._say(locker, logging.INFO, "saved and released on another session's request")

    def _released(self, locker: Locker) -> None:
        self._say(locker, logging.DEBUG, "saved and released")

    def _lost(self, locker: Locker) -> None:
        self.metrics.count("locks_lost")
        self._say(locker, logging.WARNING, "lost the lock: %s", locker.error)

    def _failed(self, locker: Locker) -> None:
        name = type(locker.error).__name__
        self._say(locker, logging.ERROR, "refused the stored record (%s, %s)", locker.failure, name)

    def _error(self, locker: Locker) -> None:
        error = locker.error
        if isinstance(error, StoreError):
            return  # logged with its request by ``finished``
        self._say(locker, logging.WARNING, "error: %s", describe(error))

    def _say(self, locker: Locker, level: int, text: str, *args: object) -> None:
        if locker_log.isEnabledFor(level):
            extra = {"key": locker.store_key, "session": self.lease_id}
            locker_log.log(
                level,
                f"key=%s session=%s {text}",
                locker.store_key,
                self.lease_id,
                *args,
                extra=extra,
            )

    # ------------------------------------------------------------------ requests

    def finished(self, request: Request, result: object, seconds: float) -> None:
        """A store request ended after ``seconds`` (called from a store thread)."""
        if isinstance(result, StoreError):
            self.failed(result, _call_name(request), _key_of(request))
            return
        if isinstance(result, Updated) and isinstance(result.outcome, tx.Saved) and result.wrote:
            self.metrics.observe("save_seconds", seconds)

    def critical(self, critical: bool, health: StoreHealth) -> None:
        """The service entered (True) or left the critical state."""
        self.metrics.add("store_critical", 1 if critical else -1)
        if critical:
            self.service_event(
                logging.WARNING,
                "store critical: %d failed calls within %g s",
                health.errors,
                health.window,
            )
        else:
            self.service_event(logging.INFO, "store answering again; critical state over")

    def failed(self, error: StoreError, what: str, key: str | None) -> None:
        """A store call (``what``, in an operator's words, on ``key``) failed."""
        kind = store_error_kind(error)
        self.metrics.count("store_errors", {"kind": kind})
        level = logging.ERROR if not error.retryable else logging.WARNING
        if service_log.isEnabledFor(level):
            service_log.log(
                level,
                "%ssession=%s %s failed (%s): %s",
                "" if key is None else f"key={key} ",
                self.lease_id,
                what,
                kind,
                error,
                extra={"key": key, "session": self.lease_id},
            )

    def service_event(self, level: int, text: str, *args: object) -> None:
        """Log a line about the service itself (no key)."""
        if service_log.isEnabledFor(level):
            service_log.log(
                level,
                f"session=%s {text}",
                self.lease_id,
                *args,
                extra={"key": None, "session": self.lease_id},
            )


def describe(error: BaseException | None) -> str:
    """An error for a log line: class name and message, but no data (see the module)."""
    name = type(error).__name__
    return name if isinstance(error, DataError) else f"{name}: {error}"


def _key_of(request: Request) -> str | None:
    return request.key if isinstance(request, Update) else None


def _call_name(request: Request) -> str:
    """What failed, in an operator's words."""
    if isinstance(request, Update):
        return "a record update"
    if isinstance(request, ReadLease):
        return f"reading the lease of session {request.lease_id}"
    if isinstance(request, PutLease):
        return "renewing our lease"
    return "dropping our lease"
