"""``PrometheusMetrics``: the library's metrics as Prometheus metric families.

Needs ``prometheus_client`` (``pip install 'sessionlocker[metrics]'``); it is imported
when a ``PrometheusMetrics`` is made, not when this module is, so the rest of the
library never needs it. Each metric in ``sessionlocker.metrics.METRICS`` becomes one
family named ``sessionlocker_<name>`` (counters end in ``_total``), created up front in
the given registry, so a scrape shows every family from the start.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from sessionlocker.errors import UsageError
from sessionlocker.metrics import METRICS, Labels

__all__ = ["SAVE_BUCKETS", "PrometheusMetrics", "family_name"]

#: Histogram buckets (seconds) for save latency: a local store's 1 ms up to a slow 10 s.
SAVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def family_name(name: str) -> str:
    """The Prometheus name of the metric ``name`` (counters get their ``_total`` there)."""
    metric = METRICS[name]
    suffix = "_total" if metric.kind == "counter" else ""
    return f"sessionlocker_{name}{suffix}"


class PrometheusMetrics:
    """Reports to ``registry`` (``prometheus_client.REGISTRY`` by default).

    Make one per registry and share it between services: the families are registered
    once. ``serve(port)`` starts ``prometheus_client``'s HTTP endpoint for this registry.
    """

    def __init__(self, registry: Any = None, *, buckets: Sequence[float] = SAVE_BUCKETS) -> None:
        client = _client()
        self.registry = client.REGISTRY if registry is None else registry
        self._client = client
        self._families: dict[str, Any] = {}
        for metric in METRICS.values():
            made = {"counter": client.Counter, "gauge": client.Gauge}.get(metric.kind)
            # prometheus_client adds ``_total`` to a counter's name itself.
            options: dict[str, Any] = {"registry": self.registry}
            if metric.kind == "histogram":
                made, options["buckets"] = client.Histogram, tuple(buckets)
            assert made is not None, metric.kind
            self._families[metric.name] = made(
                f"sessionlocker_{metric.name}", metric.help, metric.labels, **options
            )

    def count(self, name: str, labels: Labels | None = None, n: float = 1.0) -> None:
        """Add ``n`` to the counter ``name``."""
        self._family(name, labels).inc(n)

    def observe(self, name: str, value: float, labels: Labels | None = None) -> None:
        """Record one observation in the histogram ``name``."""
        self._family(name, labels).observe(value)

    def add(self, name: str, delta: float, labels: Labels | None = None) -> None:
        """Move the gauge ``name`` by ``delta``."""
        self._family(name, labels).inc(delta)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve this registry at ``http://addr:port/metrics`` from a daemon thread."""
        self._client.start_http_server(port, addr=addr, registry=self.registry)

    def text(self) -> str:
        """This registry in the Prometheus text format (what a scrape would see)."""
        return bytes(self._client.generate_latest(self.registry)).decode()

    def _family(self, name: str, labels: Labels | None) -> Any:
        family = self._families.get(name)
        if family is None:
            raise UsageError(f"{name!r} is not a sessionlocker metric; see METRICS")
        return family.labels(**labels) if labels else family

    def __repr__(self) -> str:
        return f"PrometheusMetrics({len(self._families)} families)"


def _client() -> Any:
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        raise UsageError(
            "PrometheusMetrics needs prometheus_client: pip install 'sessionlocker[metrics]'"
        ) from None
