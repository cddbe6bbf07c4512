"""Handoff latency and takeover time, between two processes on a real store.

Handoff: a holder process holds a record; this process loads it with ``force`` and
times from ``acquire("force")`` to loaded. The holder answers the release request at
its next check — at once when notified, at its next autosave when polling — saves,
unlocks, and this process takes the record at its next look (woken, or next poll).
Then this process releases, the holder takes the record back, and the next round
starts after a random pause (so the phase against the holder's autosave varies).

Takeover: a holder process holds a record while this process waits for it (``repeat``);
the holder is killed with SIGKILL at a random moment, and the time from the kill to
loaded is measured against the lease (its TTL): the target is lease + one poll period.

A memory store cannot be shared between processes: for ``memory://`` the holder runs
in a thread of this process instead (see ``holders.py``).
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from sessionlocker.benchmarks.common import Sizes, backend_name, percentiles, rounded
from sessionlocker.benchmarks.holder import Timings, bench_store
from sessionlocker.benchmarks.holders import Holder, ProcessHolder, ThreadHolder
from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import CountingStore, MemoryStore, Store, open_store
from sessionlocker.stores.base import Notifying

__all__ = ["handoff_latency", "handoff_timings", "notifying", "takeover_time"]

_ENDED = frozenset({Status.IDLE, Status.LOST, Status.FAILED})


def handoff_timings(sizes: Sizes) -> Timings:
    """The times both sides use: derived from the run's lease so small runs stay short."""
    return Timings(
        lease=sizes.lease,
        autosave=sizes.lease / 2,
        poll=sizes.lease / 20,
        force_timeout=sizes.lease * 10,
    )


def notifying(url: str) -> bool:
    """True when the store at ``url`` sends change notifications (``Notifying``)."""
    store = open_store(url)
    try:
        return isinstance(store, Notifying)
    finally:
        store.close()


class _Pair:
    """This process's service (the waiter) and a holder on the same record."""

    def __init__(self, url: str, timings: Timings, *, notifications: bool) -> None:
        self.url = url
        self.timings = timings
        self.notifications = notifications
        self.key = f"handoff-{uuid.uuid4().hex[:10]}"
        self.in_process = backend_name(url) == "memory"
        self.shared: Store | None = MemoryStore() if self.in_process else None
        self.store = self._store()
        self.service = LockerService(self.store, timings.spec(), lease_id=_lease_id())
        self.locker = self.service.locker(self.key)
        self.loaded_at = 0.0
        self.locker.on("loaded", self._loaded)
        if not self.service.run_until(self.service.lease.available, timeout=30):
            raise SessionLockerError("the benchmark's own lease did not come up in 30 s")

    def _loaded(self, _: Locker) -> None:
        self.loaded_at = time.perf_counter()

    def _store(self) -> Store:
        if self.shared is not None:
            return CountingStore.wrap(self.shared, notifications=self.notifications)
        return bench_store(self.url, notifications=self.notifications)

    def start_holder(self) -> Holder:
        if self.shared is not None:
            return ThreadHolder(self._store(), self.key, self.timings)
        return ProcessHolder(
            self.url, self.key, self.timings, notifications=self.notifications, max_seconds=900
        )

    def pause(self, seconds: float) -> None:
        """Keep driving our frames (our lease stays fresh) for ``seconds``."""
        self.service.run_until(lambda: False, timeout=seconds)

    def load(self, mode: str, timeout: float) -> float:
        """Acquire with ``mode``; return the perf_counter time it loaded at."""
        self.locker.acquire(LoadMode(mode))
        done = self.service.run_until(lambda: self.locker.status not in _WAITING, timeout)
        if not done or self.locker.status is not Status.LOADED:
            status = self.locker.status.value
            raise SessionLockerError(f"the benchmark load ended {status}: {self.locker.error}")
        return self.loaded_at

    def release(self) -> None:
        self.locker.release()
        self.service.run_until(lambda: self.locker.status in _ENDED, timeout=30)

    def close(self) -> None:
        self.service.close(timeout=5)
        self.store.delete(self.timings.spec().store_key(self.key))
        self.store.close()


_WAITING = frozenset({Status.LOADING, Status.WAITING})


def _lease_id() -> str:
    return f"bench-waiter-{uuid.uuid4().hex[:8]}"


def handoff_latency(url: str, sizes: Sizes, *, notifications: bool) -> dict[str, Any]:
    """p50/p99 of force handoffs from a live holder (milliseconds), with their settings."""
    timings = handoff_timings(sizes)
    pair = _Pair(url, timings, notifications=notifications)
    rng = random.Random(8)
    samples: list[float] = []
    forced = 0
    holder = pair.start_holder()
    try:
        holder.wait_loads(1, timeout=60)
        for n in range(sizes.handoffs + 1):  # the first round warms connections up
            pair.pause(rng.uniform(0.05, timings.autosave))
            started = time.perf_counter()
            loaded = pair.load("force", timeout=timings.force_timeout * 2)
            if n:
                samples.append(loaded - started)
                forced += loaded - started >= timings.force_timeout
            pair.release()
            holder.allow()
            holder.wait_loads(n + 2, timeout=30)
    finally:
        holder.stop()
        pair.close()
    return {
        **percentiles(samples, scale=1000),
        "with": "notifications" if notifications else "polling",
        "taken_over_after_force_timeout": forced,
        "in_process": pair.in_process,
        "settings": _settings(timings),
    }


def takeover_time(url: str, sizes: Sizes) -> dict[str, Any]:
    """Seconds from SIGKILL of a holder to loaded by a waiter, against the lease."""
    timings = handoff_timings(sizes)
    pair = _Pair(url, timings, notifications=True)
    rng = random.Random(9)
    samples: list[float] = []
    try:
        for _ in range(sizes.takeovers):
            samples.append(_one_takeover(pair, rng))
    finally:
        pair.close()
    target = timings.lease + timings.poll
    figures = percentiles(samples)
    return {
        **figures,
        "lease_s": timings.lease,
        "poll_s": timings.poll,
        "target_s": rounded(target),
        "met": bool(samples) and max(samples) <= target,
        "in_process": pair.in_process,
        "samples": [rounded(s) for s in samples],
        "settings": _settings(timings),
    }


def _one_takeover(pair: _Pair, rng: random.Random) -> float:
    holder = pair.start_holder()
    try:
        holder.wait_loads(1, timeout=60)
        pair.locker.acquire("repeat")
        pair.pause(rng.uniform(0.1, 0.1 + pair.timings.lease / 3))
        if pair.locker.status not in _WAITING:
            raise SessionLockerError(f"the waiter should wait, but is {pair.locker.status.value}")
        killed = time.perf_counter()
        holder.kill()
        done = pair.service.run_until(
            lambda: pair.locker.status is Status.LOADED, timeout=pair.timings.lease * 5
        )
        if not done:
            raise SessionLockerError("a killed holder's record was not taken over in 5 leases")
        taken = pair.loaded_at - killed
        pair.release()
        return taken
    finally:
        holder.stop()


def _settings(timings: Timings) -> dict[str, float]:
    return {
        "lease_s": timings.lease,
        "autosave_s": timings.autosave,
        "poll_s": timings.poll,
        "force_timeout_s": timings.force_timeout,
    }
