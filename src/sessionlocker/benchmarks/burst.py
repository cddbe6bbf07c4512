"""Sustained saves of one process with many loaded lockers, all changed at once.

What a game server feels at an autosave wave or a shutdown: ``count`` lockers loaded by
one ``LockerService`` with its default settings (4 worker threads), each with 1 KB of
data; every locker's data changes, is marked changed and asked to save in one go, then
the service's frames run until every save is confirmed (the ``saved`` event). Figures
per burst: saves per second, CPU time of this process per save (``time.process_time``,
every thread), and each save's latency from the start of the burst to its ``saved``
event (p50, p99).

The yardstick, in the same run, with the same client library (``raw_burst.py``): the
same record bytes (our stored record's envelope, the data encoded the same way)
written to ``count`` records of its own, each conditional on its revision, one after
another (``raw_sequential``) and all sent before the first reply is read
(``raw_pipelined``); encoding the data is inside the raw side's time too.

Rounds alternate (ours, ours after ``gc.freeze()``, raw sequential, raw pipelined) and
each side's figure is the median of its rounds. ``ours_gc_frozen`` is the same burst
after ``gc.freeze()`` (done once the lockers are loaded, undone after the burst): with
many loaded lockers the collector's full passes walk every locker's objects, and a
frozen heap spares that.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from sessionlocker.benchmarks.common import Sizes, make_data, percentiles, rounded
from sessionlocker.benchmarks.raw_burst import RawMany, open_raw_many
from sessionlocker.benchmarks.throughput import envelope_of, record_bytes
from sessionlocker.core.locker import Locker
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import open_store

__all__ = ["burst_throughput"]

#: Bytes of JSON data per locker.
RECORD_SIZE = 1_000

Locked = Locker[dict[str, Any]]


def burst_throughput(url: str, sizes: Sizes) -> dict[str, Any]:
    """Every burst size of ``sizes.burst_lockers``: ours against raw, see the module."""
    return {
        "record_bytes": RECORD_SIZE,
        "by_lockers": {str(count): _compare(url, count, sizes) for count in sizes.burst_lockers},
        "method": (
            "N loaded lockers (LockerService defaults) all changed and asked to save at once, "
            "frames until every save is confirmed; raw = the same record bytes, conditional "
            "writes to N records with the same client, sequential and pipelined; "
            "median of alternating rounds"
        ),
    }


def _compare(url: str, count: int, sizes: Sizes) -> dict[str, Any]:
    template = json.dumps(make_data(RECORD_SIZE))
    spec = Spec("bench", lambda: json.loads(template), autosave_period=3600.0, lease=60.0)
    prefix = f"burst-{uuid.uuid4().hex[:8]}"
    store = open_store(url)
    service = LockerService(store, spec)
    raw: RawMany | None = None
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in _SIDES}
    try:
        started = time.perf_counter()
        lockers = _load(service, [f"{prefix}-{i}" for i in range(count)])
        load_s = time.perf_counter() - started
        envelope = envelope_of(store, spec.store_key(lockers[0].key))
        data = json.loads(template)
        raw = open_raw_many(url, count, record_bytes(envelope, data))
        for _ in range(sizes.burst_rounds):
            rounds["ours"].append(_ours(service, lockers, freeze=False))
            rounds["ours_gc_frozen"].append(_ours(service, lockers, freeze=True))
            rounds["raw_sequential"].append(_raw(raw.sequential, envelope, data, count))
            rounds["raw_pipelined"].append(_raw(raw.pipelined, envelope, data, count))
        service.close(timeout=120)
        for locker in lockers:
            store.delete(spec.store_key(locker.key))
    finally:
        if raw is not None:
            raw.close()
        service.close(timeout=5)
        store.close()
    figures: dict[str, Any] = {"lockers": count, "load_s": rounded(load_s)}
    figures.update({name: _median(found) for name, found in rounds.items()})
    ours = figures["ours"]["saves_per_s"]
    for name in ("raw_sequential", "raw_pipelined"):
        other = figures[name]["saves_per_s"]
        figures[f"ratio_to_{name.removeprefix('raw_')}"] = rounded(ours / other) if other else None
    if raw is not None:
        figures["raw_methods"] = raw.methods
    return figures


_SIDES = ("ours", "ours_gc_frozen", "raw_sequential", "raw_pipelined")


def _load(service: LockerService, keys: list[str]) -> list[Locked]:
    loaded = [0]

    def count(_locker: Locked) -> None:
        loaded[0] += 1

    lockers = [service.locker(key) for key in keys]
    for locker in lockers:
        locker.on("loaded", count)
        locker.acquire()
    timeout = 60 + len(keys) / 50
    if not service.run_until(lambda: loaded[0] >= len(keys), timeout=timeout):
        raise SessionLockerError(f"{len(keys) - loaded[0]} benchmark lockers not loaded")
    failed = [locker for locker in lockers if locker.status is not Status.LOADED]
    if failed:
        raise SessionLockerError(f"{failed[0].key!r} did not load: {failed[0].error}")
    return lockers


def _ours(service: LockerService, lockers: list[Locked], *, freeze: bool) -> dict[str, Any]:
    done: list[float] = []

    def saved(_locker: Locked) -> None:
        done.append(time.perf_counter())

    stops = [locker.on("saved", saved) for locker in lockers]
    gc.collect()
    if freeze:
        gc.freeze()
    try:
        cpu, start = time.process_time(), time.perf_counter()
        for locker in lockers:
            locker.data["coins"] += 1
            locker.mark_changed()
            locker.force_save()
        finished = service.run_until(lambda: len(done) >= len(lockers), timeout=600)
        end, cpu = time.perf_counter(), time.process_time() - cpu
    finally:
        if freeze:
            gc.unfreeze()
        for stop in stops:
            stop()
    if not finished:
        raise SessionLockerError(f"{len(lockers) - len(done)} saves not confirmed in 600 s")
    return _figures(start, end, cpu, done)


def _raw(
    write: Callable[[list[bytes]], list[float]], envelope: bytes, data: dict[str, Any], count: int
) -> dict[str, Any]:
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    values = []
    for _ in range(count):
        data["coins"] += 1
        values.append(record_bytes(envelope, data))
    done = write(values)
    end, cpu = time.perf_counter(), time.process_time() - cpu
    return _figures(start, end, cpu, done)


def _figures(start: float, end: float, cpu: float, done: list[float]) -> dict[str, Any]:
    return {
        "saves_per_s": len(done) / (end - start),
        "cpu_us_per_save": cpu / len(done) * 1e6,
        "latencies": [moment - start for moment in done],
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [value for found in rounds for value in found["latencies"]]
    return {
        "saves_per_s": rounded(statistics.median(r["saves_per_s"] for r in rounds)),
        "cpu_us_per_save": rounded(statistics.median(r["cpu_us_per_save"] for r in rounds)),
        "latency_ms": percentiles(latencies, scale=1000),
        "rounds": len(rounds),
    }
