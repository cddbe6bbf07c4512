"""One simulated game server, run as its own process.

``python -m sessionlocker.sim.worker --db FILE --name A --session ID --history FILE``

Every player key cycles on its own: open it with mode ``force`` (asking the other
worker to let go), hold it for a random fraction of a second while incrementing its
counter, then release it and wait a little before opening it again. Every increment
whose save ``when_saved`` confirms is written to the history file at once.

The worker stops, releasing everything, on SIGTERM or SIGINT, when its parent goes away,
or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.sim.history import HistoryWriter
from sessionlocker.sim.world import Timings, player_keys
from sessionlocker.stores import SQLiteStore

__all__ = ["Slot", "Worker", "main"]

#: Seconds between two looks at the keys.
TICK = 0.02
#: How long a worker holds a key: between these many seconds.
HOLD = (0.3, 0.9)
#: Seconds between two increments of a held key.
CHANGE_EVERY = (0.05, 0.15)
#: Seconds a worker waits after a key ended before opening it again.
PAUSE = (0.0, 0.3)

_ENDED = (Status.IDLE, Status.LOST, Status.FAILED)


@dataclass
class Slot:
    """One key as this worker sees it."""

    key: str
    locker: Locker
    open: bool = False
    next_open: float = 0.0
    hold_until: float = float("inf")
    next_change: float = float("inf")


class Worker:
    """Drives the keys of one worker on top of a ``LockerService``."""

    def __init__(
        self, service: LockerService, history: HistoryWriter, keys: Sequence[str], seed: int
    ) -> None:
        self.service = service
        self.history = history
        self.rng = random.Random(seed)
        self.slots = [self._slot(key) for key in keys]

    def _slot(self, key: str) -> Slot:
        slot = Slot(key, self.service.locker(key))
        slot.locker.on("loaded", lambda _: self._loaded(slot))
        for how in ("released", "replaced", "lost", "failed"):
            slot.locker.on(how, self._on_end(slot, how))
        return slot

    def _on_end(self, slot: Slot, how: str) -> Callable[[Locker], None]:
        return lambda _: self._ended(slot, how)

    def step(self, now: float) -> None:
        """Open, change or release each key as its plan says."""
        for slot in self.slots:
            status = slot.locker.status
            if status in _ENDED:
                if slot.open:
                    slot.open = False
                    slot.next_open = now + self.rng.uniform(*PAUSE)
                elif now >= slot.next_open:
                    slot.open = True
                    slot.locker.acquire(LoadMode.FORCE)
            elif status is Status.LOADED:
                if now >= slot.hold_until:
                    slot.locker.release()
                elif now >= slot.next_change:
                    self._increment(slot)
                    slot.next_change = now + self.rng.uniform(*CHANGE_EVERY)

    def stop(self, timeout: float) -> bool:
        """Release every key and end the session; True when all were released in time."""
        return self.service.close(timeout)

    def _increment(self, slot: Slot) -> None:
        data = slot.locker.data
        n = int(data["count"]) + 1
        data["count"] = n
        data["log"].append([self.history.worker, n])
        change = slot.locker.mark_changed()

        def saved(ok: bool) -> None:
            if ok:
                self.history.write("confirmed", key=slot.key, n=n)

        slot.locker.when_saved(change, saved)

    def _loaded(self, slot: Slot) -> None:
        now = self.service.clock()
        slot.hold_until = now + self.rng.uniform(*HOLD)
        slot.next_change = now
        self.history.write("loaded", key=slot.key, epoch=slot.locker.token)

    def _ended(self, slot: Slot, how: str) -> None:
        slot.hold_until = slot.next_change = float("inf")
        error = None if slot.locker.error is None else str(slot.locker.error)
        self.history.write("ended", key=slot.key, how=how, error=error)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The worker's command line (meant for ``sessionlocker simulate``, not for people)."""
    parser = argparse.ArgumentParser(
        prog="python -m sessionlocker.sim.worker",
        description="One simulated server of `sessionlocker simulate`.",
    )
    parser.add_argument("--db", type=Path, required=True, help="the SQLite database file")
    parser.add_argument("--name", required=True, help="the worker's name in the records")
    parser.add_argument("--session", required=True, help="the session id of its service")
    parser.add_argument("--history", type=Path, required=True, help="the history file")
    parser.add_argument("--players", type=int, default=4, help="how many player keys")
    parser.add_argument("--seed", type=int, default=0, help="seed of its random choices")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop after this")
    defaults = Timings()
    parser.add_argument("--lease", type=float, default=defaults.lease)
    parser.add_argument("--autosave", type=float, default=defaults.autosave)
    parser.add_argument("--poll", type=float, default=defaults.poll)
    parser.add_argument("--force-timeout", type=float, default=defaults.force_timeout)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker until SIGTERM; exit 0 when everything was released at the end."""
    args = parse_args(argv)
    timings = Timings(args.lease, args.autosave, args.poll, args.force_timeout)
    stopping = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # Ctrl-C reaches the whole process group
    parent = os.getppid()
    history = HistoryWriter(args.history, args.name)
    service = LockerService(SQLiteStore(args.db), timings.spec(), session_id=args.session)
    worker = Worker(service, history, player_keys(args.players), args.seed)
    history.write("start", session=args.session, pid=os.getpid())
    give_up = time.monotonic() + args.max_seconds
    try:
        while not stopping.is_set() and os.getppid() == parent and time.monotonic() < give_up:
            service.run_until(stopping.is_set, timeout=TICK)
            worker.step(service.clock())
    finally:
        released = worker.stop(timeout=3.0)
        service.store.close()
        history.write("done", released=released)
        history.close()
    return 0 if released else 1


if __name__ == "__main__":
    sys.exit(main())
