"""The other side of the handoff and takeover benchmarks: a service that holds a record.

``HolderLoop`` loads one key (mode ``repeat``) and holds it. When it lets go (after
honouring a release request, or losing it) it loads the key again once allowed to
(``allow``): the benchmark allows it after it released the key itself, so the holder
never snatches the record back before the benchmark's own load. It reports each load
to a callback. It runs in a child process (``python -m sessionlocker.benchmarks.holder``:
each line on stdin allows one load, each load is reported as a JSON line on stdout) or,
for a store that lives in this process (memory), in a thread of the benchmark itself.

Run as a process it exits when its stdin closes or its parent goes away, at
``--max-seconds``, on SIGTERM (releasing the key), or when killed (which is what the
takeover benchmark does).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessionlocker.benchmarks.common import quiet_library_logs
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.drivers.service import LockerService
from sessionlocker.stores import CountingStore, Store, open_store

__all__ = ["HolderLoop", "Timings", "main"]

_ENDED = frozenset({Status.IDLE, Status.LOST, Status.FAILED})

#: Seconds between frames of a holder waiting to be allowed to load again.
_IDLE_FRAME = 0.05


@dataclass(frozen=True)
class Timings:
    """The ``Spec`` times both sides of a handoff or takeover run use, in seconds."""

    lease: float
    autosave: float
    poll: float
    force_timeout: float

    def spec(self) -> Spec:
        """A ``Spec`` for the benchmark records with these times."""
        return Spec(
            "bench",
            lambda: {"coins": 0},
            lease=self.lease,
            autosave_period=self.autosave,
            poll_period=self.poll,
            force_timeout=self.force_timeout,
        )

    def args(self) -> list[str]:
        """The command-line options that pass these timings to a holder process."""
        return [
            f"--lease={self.lease}",
            f"--autosave={self.autosave}",
            f"--poll={self.poll}",
            f"--force-timeout={self.force_timeout}",
        ]


def bench_store(url: str, *, notifications: bool) -> Store:
    """The store at ``url``, counted; its notifications hidden unless ``notifications``."""
    return CountingStore.wrap(open_store(url), notifications=notifications)


class HolderLoop:
    """Hold ``key`` on ``store``; take it back whenever it is let go."""

    def __init__(
        self,
        store: Store,
        key: str,
        timings: Timings,
        report: Callable[[dict[str, Any]], None],
    ) -> None:
        self.service = LockerService(store, timings.spec(), lease_id=_lease_id())
        self.locker = self.service.locker(key)
        self.loads = 0
        self._report = report
        self._stop = threading.Event()
        self._permits = threading.Semaphore(0)
        self.locker.on("loaded", self._loaded)
        report({"event": "started", "session": self.service.lease_id, "pid": os.getpid()})

    def _loaded(self, locker: Any) -> None:
        self.loads += 1
        self._report({"event": "loaded", "n": self.loads, "epoch": locker.token})

    def allow(self) -> None:
        """Let the holder load the key once more after it next lets go."""
        self._permits.release()

    def run(self, until: Callable[[], bool]) -> None:
        """Hold and re-take the key until ``until()`` or ``stop()``; then stop driving."""
        self.locker.acquire("repeat")
        while not self._stop.is_set() and not until():
            if self.locker.status not in _ENDED:
                self.service.run_until(
                    lambda: self._stop.is_set() or self.locker.status in _ENDED, timeout=0.2
                )
            elif self._permits.acquire(timeout=_IDLE_FRAME):
                self.locker.acquire("repeat")
            else:
                # Let go and not yet allowed back: one frame now and then keeps the lease
                # renewed. Never a busy loop: on a 2-core machine a spinning holder would
                # slow the very handoff being measured.
                self.service.run_until(lambda: False, timeout=0)

    def stop(self) -> None:
        """Stop driving frames (as a crash would: nothing is released or closed)."""
        self._stop.set()

    def close(self) -> None:
        """Release and end the lease (a clean shutdown)."""
        self.service.close(timeout=2.0)


def _lease_id() -> str:
    return f"bench-holder-{os.getpid()}-{threading.get_ident() % 100_000}"


def _take_orders(holder: HolderLoop) -> None:
    """Each line on stdin allows one more load; the end of stdin stops the holder."""
    for _line in sys.stdin:
        holder.allow()
    holder.stop()


def _say(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run a holder process (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True, help="store URL")
    parser.add_argument("--key", required=True)
    parser.add_argument("--lease", type=float, required=True)
    parser.add_argument("--autosave", type=float, required=True)
    parser.add_argument("--poll", type=float, required=True)
    parser.add_argument("--force-timeout", type=float, required=True)
    parser.add_argument("--notifications", choices=("on", "off"), default="on")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    quiet_library_logs()
    timings = Timings(args.lease, args.autosave, args.poll, args.force_timeout)
    store = bench_store(args.store, notifications=args.notifications == "on")
    parent = os.getppid()
    give_up = time.monotonic() + args.max_seconds
    holder = HolderLoop(store, args.key, timings, _say)
    signal.signal(signal.SIGTERM, lambda *_: holder.stop())  # stop cleanly: release, close
    threading.Thread(target=_take_orders, args=(holder,), daemon=True).start()
    try:
        holder.run(lambda: os.getppid() != parent or time.monotonic() > give_up)
    finally:
        holder.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
