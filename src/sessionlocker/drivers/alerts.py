"""``HealthAlerts``: a service's critical state and its store-error callbacks.

The part of ``LockerService`` that turns the results of its frames' store calls into
``StoreHealth`` counts and calls the user's ``on_critical`` and ``on_store_error``
callbacks (ProfileService's ``IsCriticalState`` and ``OnCriticalToggle``, ProfileStore's
``OnError``), from the frame thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sessionlocker.drivers.health import OPERATIONS, StoreFailure, StoreHealth
from sessionlocker.drivers.telemetry import Telemetry, service_log
from sessionlocker.errors import StoreError

__all__ = ["HealthAlerts"]


class HealthAlerts:
    """Mixed into ``LockerService``, which sets these attributes."""

    lease_id: str
    health: StoreHealth
    _telemetry: Telemetry
    _on_critical: list[Callable[[bool], None]]
    _on_store_error: list[Callable[[StoreFailure], None]]

    @property
    def critical(self) -> bool:
        """True while the store is failing (ProfileService's ``IsCriticalState``)."""
        return self.health.critical

    def on_critical(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(True)`` when the service enters the critical state and
        ``callback(False)`` when it leaves it (``OnCriticalToggle``), from the frame
        thread; returns a function that stops it."""
        self._on_critical.append(callback)
        return lambda: self._on_critical.remove(callback)

    def on_store_error(self, callback: Callable[[StoreFailure], None]) -> Callable[[], None]:
        """Call ``callback(failure)`` for every failed store call of the frames, with the
        operation, key and error (ProfileStore's ``OnError``), from the frame thread;
        returns a function that stops it."""
        self._on_store_error.append(callback)
        return lambda: self._on_store_error.remove(callback)

    def _checked(self, kind: str | None, key: str | None, result: object, now: float) -> None:
        """Feed a frame's store call result to the store health, and call back."""
        if not isinstance(result, StoreError):
            if self.health.succeeded():
                self._toggle(False)
            return
        operation = OPERATIONS.get(kind or "", kind or "unknown")
        failure = StoreFailure(operation=operation, key=key, error=result, at=now)
        for callback in list(self._on_store_error):
            self._callback(callback, failure)
        if self.health.failed(now):
            self._toggle(True)

    def _toggle(self, critical: bool) -> None:
        self._telemetry.critical(critical, self.health)
        for callback in list(self._on_critical):
            self._callback(callback, critical)

    def _callback(self, callback: Callable[[Any], object], argument: object) -> None:
        try:
            callback(argument)
        except Exception:  # a user's callback must not stop the frames
            service_log.exception(
                "session=%s a store health callback failed",
                self.lease_id,
                extra={"key": None, "session": self.lease_id},
            )
