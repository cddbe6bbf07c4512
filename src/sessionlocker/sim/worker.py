"""One simulated game server, run as its own process.

``python -m sessionlocker.sim.worker --store URL --name S1 --session ID --history FILE``

It reads the parent's commands, one JSON object per line, from standard input (see
``Server.command``) and runs a ``LockerService`` frame loop. With ``--fault-rate`` its
store is wrapped in a ``FaultyStore``; with ``--skew-offset``/``--skew-rate`` its
service clock runs ahead or behind and faster or slower than the real one.

The worker stops, releasing everything, on SIGTERM or SIGINT, when its parent goes away,
or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from sessionlocker.drivers.service import LockerService
from sessionlocker.sim.history import HistoryWriter
from sessionlocker.sim.server import Server
from sessionlocker.sim.world import Timings
from sessionlocker.stores import open_store
from sessionlocker.stores.base import Store
from sessionlocker.stores.faults import FaultyStore

__all__ = ["main", "skewed_clock"]

#: Seconds between two frames.
TICK = 0.02
#: Seconds between two notes of the injected fault counts.
FAULTS_EVERY = 0.5


def skewed_clock(offset: float, rate: float) -> Callable[[], float]:
    """A monotonic clock ``offset`` seconds off the real one, running at ``rate``."""
    start = time.monotonic()
    return lambda: start + offset + (time.monotonic() - start) * rate


def open_faulty(url: str, fault_rate: float, seed: int) -> Store:
    """The store at ``url``, with faults at ``fault_rate`` when it is above 0."""
    store = open_store(url)
    if fault_rate <= 0:
        return store
    return FaultyStore(
        store,
        fail_rate=fault_rate,
        throttle_rate=fault_rate / 2,
        unknown_rate=fault_rate,
        seed=seed,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The worker's command line (meant for ``sessionlocker simulate``, not for people)."""
    parser = argparse.ArgumentParser(
        prog="python -m sessionlocker.sim.worker",
        description="One simulated server of `sessionlocker simulate`.",
    )
    parser.add_argument("--store", required=True, help="the store URL")
    parser.add_argument("--name", required=True, help="the server's name in the records")
    parser.add_argument("--session", required=True, help="the session id of its service")
    parser.add_argument("--history", type=Path, required=True, help="the history file")
    parser.add_argument("--seed", type=int, default=0, help="seed of its random choices")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--skew-offset", type=float, default=0.0)
    parser.add_argument("--skew-rate", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this")
    defaults = Timings()
    parser.add_argument("--lease", type=float, default=defaults.lease)
    parser.add_argument("--autosave", type=float, default=defaults.autosave)
    parser.add_argument("--poll", type=float, default=defaults.poll)
    parser.add_argument("--force-timeout", type=float, default=defaults.force_timeout)
    return parser.parse_args(argv)


def _read_commands(commands: queue.Queue[dict[str, Any]]) -> None:
    for line in sys.stdin:
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if isinstance(command, dict):
            commands.put(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one server until SIGTERM; exit 0 when everything was released at the end."""
    args = parse_args(argv)
    timings = Timings(args.lease, args.autosave, args.poll, args.force_timeout)
    stopping = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # Ctrl-C reaches the whole process group
    parent = os.getppid()
    history = HistoryWriter(args.history, args.name)
    store = open_faulty(args.store, args.fault_rate, args.seed)
    clock = skewed_clock(args.skew_offset, args.skew_rate)
    service = LockerService(store, timings.spec(), lease_id=args.session, clock=clock)
    server = Server(service, history, args.seed)
    commands: queue.Queue[dict[str, Any]] = queue.Queue()
    threading.Thread(target=_read_commands, args=(commands,), daemon=True).start()
    history.write("start", session=args.session, pid=os.getpid())
    give_up = time.monotonic() + args.max_seconds
    next_faults = 0.0
    try:
        while not stopping.is_set() and os.getppid() == parent and time.monotonic() < give_up:
            while not commands.empty():
                server.command(commands.get_nowait())
            service.run_until(stopping.is_set, timeout=TICK)
            server.step(service.clock())
            if isinstance(store, FaultyStore) and time.monotonic() >= next_faults:
                history.write("faults", counts=dict(store.faults))
                next_faults = time.monotonic() + FAULTS_EVERY
    finally:
        released = service.close(timeout=5.0)
        if isinstance(store, FaultyStore):
            history.write("faults", counts=dict(store.faults))
        store.close()
        history.write("done", released=bool(released))
        history.close()
    return 0 if released else 1


if __name__ == "__main__":
    sys.exit(main())
