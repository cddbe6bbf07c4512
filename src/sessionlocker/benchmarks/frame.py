"""Frame cost: ``LockerService.update()`` with many loaded, idle lockers.

N lockers are loaded through the service on a memory store (autosave and lease far
away, so nothing comes due by itself), then:

- ``idle_frame_us``: the time of one ``update()`` when nothing is due (median and
  p99 over many frames). The design's claim: flat as N grows, under 1 ms at 100,000.
- ``due_locker_us``: the frame's own cost per locker that *is* due: K lockers are
  asked to save (``force_save``), one frame is timed, and the idle frame time is taken
  off, divided by K. The store calls those frames send are collected, not run, while
  timing (as the thread pool does: a frame only hands them over), then run and their
  results fed back before the next round.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from sessionlocker.benchmarks.common import Sizes, percentiles, rounded
from sessionlocker.core.locker import Locker
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import MemoryStore

__all__ = ["frame_cost"]

#: Lockers made due at once when measuring the cost per due locker.
_DUE = 100


class _Collecting:
    """An executor that only collects calls while a frame is timed; ``flush`` runs them."""

    def __init__(self) -> None:
        self.held: list[tuple[Callable[[], object], Callable[[object], None]]] = []
        self.collect = False

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        if self.collect:
            self.held.append((call, done))
        else:
            done(call())

    def flush(self) -> None:
        held, self.held = self.held, []
        for call, done in held:
            done(call())

    def shutdown(self) -> None:
        self.flush()


def frame_cost(sizes: Sizes) -> dict[str, Any]:
    """Idle frame time and per-due-locker cost for each locker count in ``sizes``."""
    idle: dict[str, Any] = {}
    due: dict[str, Any] = {}
    for count in sizes.frame_lockers:
        idle_frames, due_cost = _measure(count, sizes.frames)
        idle[str(count)] = percentiles(idle_frames, scale=1e6)
        due[str(count)] = due_cost
    return {
        "idle_frame_us": idle,
        "due_locker_us": due,
        "store": "memory",
        "method": (
            "median/p99 of update() with nothing due; due cost = (frame with "
            f"{_DUE} lockers due - idle frame) / {_DUE}, store calls handed over, not run"
        ),
    }


def _measure(count: int, frames: int) -> tuple[list[float], float | None]:
    executor = _Collecting()
    spec = Spec("bench", lambda: {"coins": 0}, autosave_period=1e6, lease=1e6, poll_period=1.0)
    service = LockerService(MemoryStore(), spec, lease_id="bench-frames", executor=executor)
    try:
        lockers = _load(service, count)
        gc.collect()
        idle = [_timed_frame(service) for _ in range(frames)]
        due = _due_cost(service, executor, lockers, statistics.median(idle))
    finally:
        service.close(timeout=60)
    return idle, due


def _load(service: LockerService, count: int) -> list[Locker]:
    lockers = [service.locker(f"idle-{n}") for n in range(count)]
    service.update()  # the lease first: a locker loads only under a live lease
    service.update()
    for locker in lockers:
        locker.acquire()
    for _ in range(10):
        service.update()
        if all(locker.status is Status.LOADED for locker in lockers):
            return lockers
    raise SessionLockerError(f"{count} benchmark lockers did not all load")


def _timed_frame(service: LockerService) -> float:
    start = time.perf_counter()
    service.update()
    return time.perf_counter() - start


def _due_cost(
    service: LockerService, executor: _Collecting, lockers: list[Locker], idle: float
) -> float | None:
    per_locker: list[float] = []
    for round_ in range(5):
        chosen = lockers[round_ * _DUE : (round_ + 1) * _DUE] or lockers[:_DUE]
        for locker in chosen:
            locker.data["coins"] += 1
            locker.mark_changed()
            locker.force_save()
        executor.collect = True
        frame = _timed_frame(service)
        executor.collect = False
        executor.flush()
        service.update()  # take the results back
        per_locker.append((frame - idle) / len(chosen))
    return rounded(statistics.median(per_locker) * 1e6)
