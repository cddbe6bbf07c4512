"""A child process for tests/test_processes.py: hold some keys and keep changing them.

Run as ``python tests/procs/holder.py --db FILE --keys k1,k2 --name A``. It loads every
key (mode ``repeat``), then increments each loaded key's counter every
``--change-every`` seconds, whether or not its lease is still fresh, so that it keeps
trying to write. It drives its own frames so that it can tell, at the top of a frame and
before anything is sent, that it was frozen (a jump of the monotonic clock).

It reports on stdout, one JSON object per line, flushed:

- ``{"event": "started", "session": ...}``
- ``{"event": "loaded", "key": ..., "epoch": ...}``
- ``{"event": "confirmed", "key": ..., "n": ...}``: change ``n`` is in a committed write
- ``{"event": "ready", "available": ...}``: every key has ``--ready-after`` confirmed
- ``{"event": "resumed", "gap": ..., "available": {...}, "status": {...}}``: after a freeze
- ``{"event": "lost", "key": ...}``: the locker found another session on the lock

It exits when its parent goes away or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from sessionlocker import Locker, LockerService, Spec, Status
from sessionlocker.stores import SQLiteStore

TICK = 0.01


def say(event: str, **fields: Any) -> None:
    """Report one event to the test."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def fresh() -> dict[str, Any]:
    """Data of a key never stored: a counter and the log of who made each increment."""
    return {"count": 0, "log": []}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--keys", required=True, help="comma-separated keys")
    parser.add_argument("--name", default="A")
    parser.add_argument("--session", default=None)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--autosave", type=float, default=0.2)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--change-every", type=float, default=0.05)
    parser.add_argument("--ready-after", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    return parser.parse_args()


class Holder:
    """The keys of this child and what it reported about them."""

    def __init__(self, service: LockerService, keys: list[str], name: str) -> None:
        self.service = service
        self.name = name
        self.lockers = {key: service.locker(key) for key in keys}
        self.confirmed = dict.fromkeys(keys, 0)
        self.ready = False
        for key, locker in self.lockers.items():
            locker.on("loaded", lambda locker, key=key: say("loaded", key=key, epoch=locker.token))
            locker.on("lost", lambda locker, key=key: say("lost", key=key, error=str(locker.error)))
            locker.acquire("repeat")

    def change_all(self) -> None:
        """Increment every loaded key and ask to hear when the change is saved."""
        for key, locker in self.lockers.items():
            if locker.status is Status.LOADED:
                self.change(key, locker)

    def change(self, key: str, locker: Locker) -> None:
        n = locker.data["count"] + 1
        locker.data["count"] = n
        locker.data["log"].append([self.name, n])

        def saved(ok: bool) -> None:
            if ok:
                self.confirmed[key] += 1
                say("confirmed", key=key, n=n)

        locker.when_saved(locker.mark_changed(), saved)

    def check_ready(self, ready_after: int) -> None:
        if not self.ready and min(self.confirmed.values()) >= ready_after:
            self.ready = True
            available = all(locker.is_available() for locker in self.lockers.values())
            say("ready", available=available)

    def resumed(self, gap: float, now: float) -> None:
        """Say what the lockers think right after a freeze, before any frame runs."""
        say(
            "resumed",
            gap=round(gap, 3),
            available={key: locker.is_available(now) for key, locker in self.lockers.items()},
            status={key: locker.status.value for key, locker in self.lockers.items()},
        )


def main() -> int:
    args = parse_args()
    spec = Spec(
        "things",
        fresh,
        lease=args.lease,
        autosave_period=args.autosave,
        poll_period=args.poll,
        force_timeout=30.0,
    )
    parent = os.getppid()
    store = SQLiteStore(args.db)
    service = LockerService(store, spec, lease_id=args.session)
    say("started", session=service.lease_id, pid=os.getpid())
    holder = Holder(service, args.keys.split(","), args.name)
    clock = service.clock
    give_up = clock() + args.max_seconds
    next_change = last_frame = clock()
    while os.getppid() == parent and clock() < give_up:
        now = clock()
        gap, last_frame = now - last_frame, now
        if gap > args.lease / 2:  # we were frozen: look before this frame sends anything
            holder.resumed(gap, now)
        service.update(now)
        if now >= next_change:
            holder.change_all()
            next_change = now + args.change_every
        holder.check_ready(args.ready_after)
        time.sleep(TICK)
    service.close(timeout=2.0)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
