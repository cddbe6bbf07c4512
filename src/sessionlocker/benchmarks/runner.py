"""Run every benchmark for some store URLs and gather one JSON-ready result.

Backend-specific parts (save throughput, round trips, handoff, takeover) run for each
URL; the rest (frame cost, memory) once. A part that fails is
recorded as ``{"error": "..."}`` and the run goes on: a long benchmark run should not
lose every figure to one broken backend; ``errors(results)`` lists what failed.
"""

from __future__ import annotations

import datetime
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from sessionlocker.benchmarks.burst import burst_throughput
from sessionlocker.benchmarks.common import Sizes, backend_name, machine, rounded
from sessionlocker.benchmarks.environment import library_versions, server_version
from sessionlocker.benchmarks.footprint import memory_per_locker
from sessionlocker.benchmarks.frame import frame_cost
from sessionlocker.benchmarks.handoff import handoff_latency, notifying, takeover_time
from sessionlocker.benchmarks.probe import driver_uses_notifications
from sessionlocker.benchmarks.round_trips import lifecycle_round_trips
from sessionlocker.benchmarks.throughput import save_throughput
from sessionlocker.stores.opening import redact

__all__ = ["PARTS", "errors", "guarded", "run"]

#: Every part, in the order they run.
PARTS = ("save", "burst", "round_trips", "handoff", "takeover", "frame", "memory")

Progress = Callable[[str], None]


def run(
    urls: Iterable[str],
    sizes: Sizes,
    *,
    parts: Iterable[str] = PARTS,
    progress: Progress | None = None,
    reproduce: str = "sessionlocker bench --store URL --json",
) -> dict[str, Any]:
    """Every part in ``parts`` for every URL in ``urls``; see the module docstring."""
    chosen = frozenset(parts)
    say = progress or (lambda _text: None)
    notified = driver_uses_notifications()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": library_versions(),
        "sizes": sizes.as_dict(),
        "how_to_reproduce": reproduce,
        "driver_uses_notifications": notified,
        "backends": {},
    }
    for url in urls:
        name = backend_name(url)
        say(f"{name}: {redact(url)}")
        results["backends"][name] = _backend(url, sizes, chosen, notified, say)
    shared: dict[str, Callable[[], Any]] = {
        "frame": lambda: frame_cost(sizes),
        "memory": lambda: memory_per_locker(sizes),
    }
    for part, measure in shared.items():
        if part in chosen:
            say(part)
            results[part] = guarded(measure)
    return _with_raw_round_trips(results)


def _backend(
    url: str, sizes: Sizes, parts: frozenset[str], notified: bool, say: Progress
) -> dict[str, Any]:
    figures: dict[str, Any] = {"url": redact(url), "server_version": server_version(url)}
    if "save" in parts:
        say("  save throughput")
        save = guarded(lambda: save_throughput(url, sizes))
        figures["save_ratio"] = save.get("ratio")
        figures["save"] = save
    if "burst" in parts:
        say("  burst of saves from many loaded lockers")
        figures["burst"] = guarded(lambda: burst_throughput(url, sizes))
    if "round_trips" in parts:
        say("  round trips")
        figures["round_trips"] = guarded(lambda: lifecycle_round_trips(url))
    if "handoff" in parts:
        figures.update(_handoffs(url, sizes, notified, say))
    if "takeover" in parts:
        say("  takeover after SIGKILL")
        takeover = guarded(lambda: takeover_time(url, sizes))
        figures["takeover_s"] = takeover.get("p50")
        figures["takeover"] = takeover
    return figures


def _handoffs(url: str, sizes: Sizes, notified: bool, say: Progress) -> dict[str, Any]:
    say("  handoff, polling only")
    polling = guarded(lambda: handoff_latency(url, sizes, notifications=False))
    notes = []
    notifications: dict[str, Any] | None = None
    if not notifying(url):
        notes.append("this store sends no notifications: polling only")
    elif not notified:
        notes.append("the store notifies, but LockerService does not use notifications yet")
    else:
        say("  handoff, with notifications")
        notifications = guarded(lambda: handoff_latency(url, sizes, notifications=True))
    best = notifications if notifications is not None else polling
    return {
        "handoff_ms": {k: best.get(k) for k in ("p50", "p99", "n", "with")},
        "handoff_polling_ms": polling,
        "handoff_notified_ms": notifications,
        "handoff_notes": notes,
    }


def _with_raw_round_trips(results: dict[str, Any]) -> dict[str, Any]:
    """Add, per backend, the handoff p50 counted in raw round trips of that backend."""
    for figures in results["backends"].values():
        raw = figures.get("save", {}).get("by_size", {})
        first: dict[str, Any] = next(iter(raw.values()), {})
        rtt = first.get("raw_write_ms", {}).get("p50")
        p50 = figures.get("handoff_ms", {}).get("p50")
        figures["raw_round_trip_ms"] = rtt
        figures["handoff_p50_in_raw_round_trips"] = rounded(p50 / rtt) if p50 and rtt else None
    return results


def guarded(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``, or ``{"error": ...}`` when it raises (the traceback goes to stderr)."""
    try:
        return measure()
    except Exception as exc:  # one part failing must not lose the others' figures
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {exc}"}


def errors(results: dict[str, Any]) -> list[str]:
    """Where a part failed, as ``"backend/part: message"`` (empty when none did)."""
    found = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("error"), str):
                found.append(f"{path}: {value['error']}")
            for key, inner in value.items():
                walk(inner, f"{path}/{key}" if path else str(key))

    walk(results, "")
    return found
