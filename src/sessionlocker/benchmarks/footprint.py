"""Memory per loaded locker, beyond the data itself (``tracemalloc``).

N lockers are loaded through a ``LockerService`` (store calls run inline) and the
Python memory they keep is measured: a ``tracemalloc`` snapshot before and after,
after a garbage collection each time. From that the memory the same N data objects
take on their own (as ``json.loads`` makes them) is taken off, leaving what the
library adds per locker: the locker, its bookkeeping in the service, the last saved
JSON text (to tell whether a save is needed) and the last known stored record (for
one-round-trip saves). The last two grow with the data, so two data sizes are shown.

The store is SQLite in a temporary folder: its data lives in the database file and
its page cache is C memory, which ``tracemalloc`` does not see, so only what the
library keeps in Python is counted (a memory store would mix its own copies in).
"""

from __future__ import annotations

import gc
import json
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sessionlocker.benchmarks.common import Sizes, make_data
from sessionlocker.benchmarks.virtual import World
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import SQLiteStore

__all__ = ["memory_per_locker"]

_DATA_SIZES = {"tiny": 20, "1KB": 1_000}


def memory_per_locker(sizes: Sizes) -> dict[str, Any]:
    """Bytes per loaded locker beyond its data, for a tiny and a 1 KB record."""
    by_size = {label: _measure(sizes.memory_lockers, size) for label, size in _DATA_SIZES.items()}
    return {
        "by_data_size": by_size,
        "lockers": sizes.memory_lockers,
        "method": "tracemalloc: (loaded lockers - the same data alone) / lockers; SQLite store",
    }


def _measure(count: int, size: int) -> dict[str, Any]:
    template = make_data(size)
    text = json.dumps(template)
    data_bytes = _allocated(lambda: [json.loads(text) for _ in range(count)])
    with tempfile.TemporaryDirectory(prefix="sessionlocker-bench-") as folder:
        store = SQLiteStore(Path(folder) / "memory.db")
        world = World()
        spec = Spec("bench", lambda: json.loads(text), lease=1e6, autosave_period=1e6)
        service = LockerService(
            store, spec, clock=world.clock, wall=world.clock.wall, executor=world.executor()
        )
        world.add(service)
        world.settle()
        try:
            total = _allocated(lambda: _load(world, service, count))
        finally:
            world.close(service)
            store.close()
    return {
        "data_json_bytes": len(text),
        "data_object_bytes": round(data_bytes / count),
        "locker_total_bytes": round(total / count),
        "beyond_data_bytes": round((total - data_bytes) / count),
    }


def _load(world: World, service: LockerService, count: int) -> list[Any]:
    lockers = [service.locker(f"mem-{n}") for n in range(count)]
    for locker in lockers:
        locker.acquire()
    world.settle()
    if not all(locker.status is Status.LOADED for locker in lockers):
        raise SessionLockerError("the memory benchmark's lockers did not all load")
    return lockers


def _allocated(make: Callable[[], object]) -> int:
    """Bytes of Python memory still held by what ``make()`` returns."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before
