"""Metrics: a tiny interface the library reports through, a no-op and an in-memory one.

The library never imports a metrics system. A ``LockerService`` (and a ``Purchaser``)
reports to whatever ``Metrics`` it was given: three calls, each naming one of the
metrics in ``METRICS`` with its labels. ``NoMetrics`` (the default) drops everything;
``MemoryMetrics`` keeps values in the process (tests, ``sessionlocker simulate``);
``sessionlocker.prometheus.PrometheusMetrics`` exports them.

Gauges are reported as changes (``add(name, +1)`` then ``add(name, -1)``), not as
absolute values, so several services in one process can share one metrics object and
their lockers add up instead of overwriting each other.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sessionlocker.errors import StoreError, Throttled, UsageError

__all__ = [
    "METRICS",
    "NO_METRICS",
    "Labels",
    "MemoryMetrics",
    "Metric",
    "Metrics",
    "NoMetrics",
    "store_error_kind",
]

#: Label values by label name, e.g. ``{"state": "loaded"}``.
Labels = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric the library reports: its short name, type, label names and meaning."""

    name: str
    kind: str  # "counter", "histogram" or "gauge"
    labels: tuple[str, ...]
    help: str


#: Every metric the library reports, by short name. Exporters prefix ``sessionlocker_``
#: (and suffix ``_total`` to counters); docs/operations.md describes each one.
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("saves", "counter", (), "Committed writes of a locker's data (saves)."),
        Metric(
            "save_seconds",
            "histogram",
            (),
            "Seconds from sending a save to the store until its write committed.",
        ),
        Metric(
            "lockers",
            "gauge",
            ("state",),
            "Live lockers by state (loading, waiting, loaded, releasing).",
        ),
        Metric(
            "store_errors",
            "counter",
            ("kind",),
            "Failed store calls by kind: throttled, retryable, unknown_outcome, permanent.",
        ),
        Metric(
            "handoffs",
            "counter",
            ("direction",),
            "Locks handed over on request: out (we released when asked), "
            "in (we loaded after asking the holder).",
        ),
        Metric(
            "takeovers",
            "counter",
            (),
            "Locks taken from a session that did not release them "
            "(its lease expired, a steal, or a force timeout).",
        ),
        Metric("locks_lost", "counter", (), "Locks lost to another session while held."),
        Metric(
            "store_critical",
            "gauge",
            (),
            "Services whose store is in the critical state (too many failed calls lately).",
        ),
        Metric(
            "purchases",
            "counter",
            ("result",),
            "Purchase receipts answered: granted, or deferred (not_processed_yet).",
        ),
    )
}


class Metrics(Protocol):
    """Where the library reports. Called from the frame thread and from store threads."""

    def count(self, name: str, labels: Labels | None = None, n: float = 1.0) -> None:
        """Add ``n`` to the counter ``name``."""

    def observe(self, name: str, value: float, labels: Labels | None = None) -> None:
        """Record one observation (seconds, say) in the histogram ``name``."""

    def add(self, name: str, delta: float, labels: Labels | None = None) -> None:
        """Move the gauge ``name`` up or down by ``delta``."""


class NoMetrics:
    """Reports nowhere: the default, so code that reports needs no ``if``."""

    def count(self, name: str, labels: Labels | None = None, n: float = 1.0) -> None:
        """Drop it."""

    def observe(self, name: str, value: float, labels: Labels | None = None) -> None:
        """Drop it."""

    def add(self, name: str, delta: float, labels: Labels | None = None) -> None:
        """Drop it."""


#: The shared do-nothing metrics.
NO_METRICS = NoMetrics()

_Series = tuple[str, tuple[tuple[str, str], ...]]


class MemoryMetrics:
    """Keeps every value in memory, thread-safe. Read with ``value`` and ``observations``.

    Names and label names are checked against ``METRICS``, so a typo fails at once.
    """

    def __init__(self) -> None:
        self._values: dict[_Series, float] = {}
        self._observed: dict[_Series, list[float]] = {}
        self._lock = threading.Lock()

    def count(self, name: str, labels: Labels | None = None, n: float = 1.0) -> None:
        """Add ``n`` to the counter ``name``."""
        series = _series(name, labels, "counter")
        with self._lock:
            self._values[series] = self._values.get(series, 0.0) + n

    def observe(self, name: str, value: float, labels: Labels | None = None) -> None:
        """Record one observation in the histogram ``name``."""
        series = _series(name, labels, "histogram")
        with self._lock:
            self._observed.setdefault(series, []).append(value)

    def add(self, name: str, delta: float, labels: Labels | None = None) -> None:
        """Move the gauge ``name`` by ``delta``."""
        series = _series(name, labels, "gauge")
        with self._lock:
            self._values[series] = self._values.get(series, 0.0) + delta

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value for these labels (0 if never reported)."""
        series = _series(name, labels, METRICS[name].kind if name in METRICS else "")
        with self._lock:
            return self._values.get(series, 0.0)

    def observations(self, name: str, **labels: str) -> list[float]:
        """Every value a histogram recorded for these labels, in order."""
        series = _series(name, labels, "histogram")
        with self._lock:
            return list(self._observed.get(series, []))

    def summary(self) -> str:
        """One line per reported series, sorted: counters and gauges, then histograms."""
        with self._lock:
            values = sorted(self._values.items())
            observed = sorted(self._observed.items())
        lines = [f"{_shown(series)} {value:g}" for series, value in values]
        for series, seen in observed:
            mean = sum(seen) / len(seen)
            lines.append(
                f"{_shown(series)} count={len(seen)} mean={mean:.6f}s max={max(seen):.6f}s"
            )
        return "\n".join(lines)


def store_error_kind(error: StoreError) -> str:
    """The ``kind`` label of a store error: what a caller can do about it."""
    if isinstance(error, Throttled):
        return "throttled"
    if error.unknown_outcome:
        return "unknown_outcome"
    return "retryable" if error.retryable else "permanent"


def _series(name: str, labels: Labels | None, kind: str) -> _Series:
    metric = METRICS.get(name)
    if metric is None or metric.kind != kind:
        raise UsageError(f"{name!r} is not a {kind or 'known'} metric; metrics: {sorted(METRICS)}")
    given = dict(labels or {})
    if set(given) != set(metric.labels):
        raise UsageError(f"metric {name!r} takes labels {metric.labels}, not {sorted(given)}")
    return name, tuple(sorted(given.items()))


def _shown(series: _Series) -> str:
    name, labels = series
    inside = ",".join(f'{label}="{value}"' for label, value in labels)
    return f"{name}{{{inside}}}" if inside else name
