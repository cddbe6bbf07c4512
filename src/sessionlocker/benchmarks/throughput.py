"""Save throughput of one loaded locker, against the raw backend's conditional write.

Ours: a ``LockerService`` with one worker thread (one connection) holds one locker;
each save changes the data, marks it changed, asks for a save and drives frames until
the save is confirmed — the whole public path: JSON encoding of the data, the record
transform, the conditional write, the thread hand-off and the confirmation.

Raw: the same data is JSON-encoded the same way (compact, UTF-8) and spliced into the
same record envelope our store holds (its metadata as last written), so each raw write
carries the same bytes as ours; it is written with the backend's own conditional write
(``raw.py``), one call after another on one connection. The raw side checks nothing
and keeps no metadata up to date: that is the work whose cost the ratio shows.

Both run one save at a time, in alternating rounds (ours, raw, ours, raw, …) so that
noise from other work on the machine falls on both; each side's figure is the median
of its rounds. The ratio is ours / raw (1.0: locking costs nothing).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

from sessionlocker.benchmarks.common import Sizes, make_data, percentiles, rounded
from sessionlocker.benchmarks.raw import RawWriter, open_raw
from sessionlocker.core.locker import Locker
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import open_store
from sessionlocker.stores.base import Store

__all__ = ["envelope_of", "record_bytes", "save_throughput"]


def save_throughput(url: str, sizes: Sizes) -> dict[str, Any]:
    """Saves per second, ours and raw, for each record size; and their ratio."""
    results: dict[str, Any] = {}
    for size in sizes.record_sizes:
        results[_label(size)] = _compare(url, size, sizes)
    ratios = [r["ratio"] for r in results.values() if r["ratio"] is not None]
    return {
        "by_size": results,
        "ratio": min(ratios) if ratios else None,
        "method": (
            "one save at a time on one connection; ours = change, mark_changed, force_save, "
            "frames until confirmed; raw = the same record bytes (data encoded the same way) + the "
            "backend's conditional write; "
            "median of alternating rounds"
        ),
    }


def _label(size: int) -> str:
    return f"{size // 1000}KB" if size >= 1000 else f"{size}B"


def _compare(url: str, size: int, sizes: Sizes) -> dict[str, Any]:
    data = make_data(size)
    ours_rates: list[float] = []
    raw_rates: list[float] = []
    latencies: list[float] = []
    # Autosave and lease far enough that nothing happens by itself during a round.
    spec = Spec("bench", lambda: make_data(size), autosave_period=3600.0, lease=30.0)
    key = f"save-{uuid.uuid4().hex[:10]}"
    store = open_store(url)
    service = LockerService(store, spec, workers=1)
    raw: RawWriter | None = None
    try:
        locker = _load(service, key)
        envelope = envelope_of(store, spec.store_key(key))
        raw = open_raw(url, record_bytes(envelope, data))
        for _ in range(sizes.save_rounds):
            ours_rates.append(_ours_round(service, locker, sizes.save_seconds))
            rate, round_latencies = _raw_round(raw, envelope, data, sizes.save_seconds)
            raw_rates.append(rate)
            latencies.extend(round_latencies)
        locker.release()
        service.run_until(lambda: locker.status is not Status.RELEASING, timeout=10)
        store.delete(spec.store_key(key))
    finally:
        if raw is not None:
            raw.close()
        service.close(timeout=5)
        store.close()
    ours, rawest = statistics.median(ours_rates), statistics.median(raw_rates)
    return {
        "record_bytes": len(json.dumps(data)),
        "ours_per_s": rounded(ours),
        "raw_per_s": rounded(rawest),
        "ratio": rounded(ours / rawest) if rawest else None,
        "added_us": rounded(1e6 / ours - 1e6 / rawest) if ours and rawest else None,
        "raw_write_ms": percentiles(latencies, scale=1000),
        "raw_method": raw.method,
        "raw_bytes": "the same record bytes as ours (envelope as stored, data compact)",
    }


def envelope_of(store: Store, store_key: str) -> bytes:
    """Our stored record up to its data (the data is written last): the raw side's head."""
    stored = store.read(store_key)
    marker = b',"data":'
    if stored is None or marker not in stored.value:
        raise SessionLockerError(f"the benchmark record {store_key!r} is not stored as expected")
    return stored.value[: stored.value.rindex(marker) + len(marker)]


def record_bytes(envelope: bytes, data: dict[str, Any]) -> bytes:
    """The record bytes the raw side writes: ``envelope``, the data as ours encodes it."""
    return envelope + _ENCODE(data).encode("utf-8") + b"}"


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _load(service: LockerService, key: str) -> Locker:
    locker = service.locker(key)
    locker.acquire()
    if not service.run_until(lambda: locker.status is not Status.LOADING, timeout=30):
        raise SessionLockerError(f"the benchmark record {key!r} did not load in 30 s")
    if locker.status is not Status.LOADED:
        raise SessionLockerError(f"the benchmark record {key!r} did not load: {locker.error}")
    return locker


def _ours_round(service: LockerService, locker: Locker, seconds: float) -> float:
    """Saves per second through the service, for ``seconds``."""
    saves = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        locker.data["coins"] += 1
        locker.mark_changed()
        locker.force_save()
        if not service.run_until(lambda: not locker.changes_pending, timeout=30):
            raise SessionLockerError(f"a save was not confirmed in 30 s ({locker.error})")
        saves += 1
        now = time.perf_counter()
        if now >= deadline:
            return saves / (now - start)


def _raw_round(
    raw: RawWriter, envelope: bytes, data: dict[str, Any], seconds: float
) -> tuple[float, list[float]]:
    """Raw saves per second for ``seconds`` (encoding included), and each write's latency."""
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        data["coins"] += 1
        value = record_bytes(envelope, data)
        before = time.perf_counter()
        raw.write(value)
        now = time.perf_counter()
        latencies.append(now - before)
        if now >= deadline:
            return len(latencies) / (now - start), latencies
