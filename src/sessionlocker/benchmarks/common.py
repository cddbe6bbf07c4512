"""What every benchmark shares: run sizes, sample data, percentiles, the machine.

Benchmarks measure; they never assert. Each returns plain JSON-ready values (numbers,
strings, lists and dicts), so the runner can put them straight into ``results.json``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sessionlocker.stores.opening import parse_store_url

__all__ = [
    "FULL",
    "QUICK",
    "TINY",
    "Sizes",
    "backend_name",
    "machine",
    "make_data",
    "percentiles",
    "quiet_library_logs",
    "rounded",
]


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does. ``FULL`` for published figures, smaller for checks."""

    name: str
    #: Seconds of saving per round of the throughput comparison, and rounds (alternating).
    save_seconds: float
    save_rounds: int
    #: Record sizes of the throughput comparison, in bytes of JSON data.
    record_sizes: tuple[int, ...]
    #: Handoffs between two processes, per mode (polling, notifications).
    handoffs: int
    #: Holders killed, each taken over once.
    takeovers: int
    #: Lease (TTL) in seconds of the services in the handoff and takeover runs.
    lease: float
    #: Loaded idle lockers of the frame-cost runs.
    frame_lockers: tuple[int, ...]
    #: Frames timed per frame-cost run.
    frames: int
    #: Lockers whose memory is measured.
    memory_lockers: int
    #: Samples (random phases) per baseline scenario, in virtual time.
    baseline_samples: int
    #: Loaded lockers saving at once in the burst benchmark, and its rounds.
    burst_lockers: tuple[int, ...] = (1_000,)
    burst_rounds: int = 1
    #: Cycles of the peers benchmark (``session()`` per cycle against other libraries).
    peer_cycles: int = 300

    def as_dict(self) -> dict[str, Any]:
        """The sizes as JSON values, for the results file."""
        return asdict(self)


FULL = Sizes(
    name="full",
    save_seconds=2.0,
    save_rounds=3,
    record_sizes=(1_000, 100_000),
    handoffs=30,
    takeovers=8,
    lease=2.0,
    frame_lockers=(1_000, 10_000, 100_000),
    frames=2_000,
    memory_lockers=2_000,
    baseline_samples=200,
    burst_lockers=(1_000, 10_000),
    burst_rounds=2,
    peer_cycles=2_000,
)

QUICK = Sizes(
    name="quick",
    save_seconds=0.5,
    save_rounds=2,
    record_sizes=(1_000, 100_000),
    handoffs=8,
    takeovers=2,
    lease=1.5,
    frame_lockers=(1_000, 10_000),
    frames=500,
    memory_lockers=500,
    baseline_samples=40,
    burst_lockers=(1_000,),
    burst_rounds=1,
    peer_cycles=300,
)

#: For the smoke test: every benchmark runs, each for a moment.
TINY = Sizes(
    name="tiny",
    save_seconds=0.05,
    save_rounds=1,
    record_sizes=(1_000, 10_000),
    handoffs=2,
    takeovers=1,
    lease=0.6,
    frame_lockers=(100, 1_000),
    frames=50,
    memory_lockers=50,
    baseline_samples=3,
    burst_lockers=(20,),
    burst_rounds=1,
    peer_cycles=5,
)


def make_data(size: int) -> dict[str, Any]:
    """Player-like JSON data of about ``size`` bytes (never less): a counter and items."""
    data: dict[str, Any] = {"coins": 0, "items": []}
    items: list[dict[str, Any]] = data["items"]
    while len(json.dumps(data)) < size:
        n = len(items)
        items.append({"id": n, "name": f"item-{n:05d}", "level": n % 50, "tags": ["bench"]})
    return data


def percentiles(samples: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    """p50, p99, min, max and count of ``samples`` (multiplied by ``scale``)."""
    if not samples:
        return {"p50": None, "p99": None, "min": None, "max": None, "n": 0}
    ordered = sorted(value * scale for value in samples)
    return {
        "p50": rounded(statistics.median(ordered), digits),
        "p99": rounded(_nearest_rank(ordered, 0.99), digits),
        "min": rounded(ordered[0], digits),
        "max": rounded(ordered[-1], digits),
        "n": len(ordered),
    }


def _nearest_rank(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile: with fewer than 100 samples, p99 is the maximum."""
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``value`` to ``digits`` significant figures (JSON files stay readable)."""
    if value is None or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action()`` took, by the monotonic performance counter."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def backend_name(url: str) -> str:
    """The name a backend has in the results: ``memory``, ``sqlite``, ``redis``, …"""
    backend, _parsed = parse_store_url(url)
    return "postgresql" if backend.scheme in ("postgres", "postgresql") else backend.scheme


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": _load_average(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            kilobytes = int(info.readline().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(kilobytes / 1024 / 1024, 1)


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def quiet_library_logs() -> None:
    """Keep only the library's errors: the benchmarks kill, freeze and take over holders
    on purpose, and a warning for each would drown the progress lines."""
    logging.getLogger("sessionlocker").setLevel(logging.ERROR)
