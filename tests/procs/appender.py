"""A child process for tests/test_sentinel_failover.py: append ids to shared records.

Run as ``python tests/procs/appender.py --url URL --keys k1,k2 --name A``. For every key
it opens a locker and acquires it with ``force`` (a holder in another process hands
it over, saving its changes first); a locker that ends (handed over, or lost) is
replaced by a new one after a short random pause, so the keys keep moving between the
processes. Every ``--append-every`` seconds it appends a new id ``<name>-<n>`` to the
list ``ids`` of every key it holds, and says the id is acknowledged only when
``when_saved`` reports it saved (True).

It reports on stdout, one JSON object per line, flushed:

- ``{"event": "loaded", "key": ..., "epoch": ..., "session": ...}``
- ``{"event": "acked", "key": ..., "id": ..., "at": <time.time()>}``

It exits when its parent goes away, when the file ``--stop`` exists, or after
``--max-seconds``; then it closes its service (its lockers save and release).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from sessionlocker import Locker, LockerService, Spec, Status
from sessionlocker.stores import open_store

TICK = 0.01


def say(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def fresh() -> dict[str, Any]:
    return {"ids": []}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True, help="comma-separated keys")
    parser.add_argument("--name", required=True)
    parser.add_argument("--stop", required=True, help="stop once this file exists")
    parser.add_argument("--append-every", type=float, default=0.1)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    return parser.parse_args()


class Appender:
    """The lockers of this process, replaced as they end, and the ids appended."""

    def __init__(self, service: LockerService, keys: list[str], name: str) -> None:
        self.service = service
        self.name = name
        self.count = 0
        self.lockers: dict[str, Locker[Any] | None] = dict.fromkeys(keys)
        self.reopen_at = dict.fromkeys(keys, 0.0)

    def open_ended(self, now: float) -> None:
        """A new locker (acquired with force) for every key whose locker ended."""
        for key, locker in self.lockers.items():
            if locker is not None and self.service.get(key) is not locker:  # it ended
                self.lockers[key] = None
                self.reopen_at[key] = now + random.uniform(0.3, 1.5)
            elif locker is None and now >= self.reopen_at[key]:
                self.lockers[key] = self.open(key)

    def open(self, key: str) -> Locker[Any]:
        locker = self.service.locker(key)
        session = self.service.lease_id

        def loaded(locker: Locker[Any]) -> None:
            say("loaded", key=key, epoch=locker.token, session=session)

        locker.on("loaded", loaded)
        locker.acquire("force")
        return locker

    def append_all(self) -> None:
        for key, locker in self.lockers.items():
            if locker is not None and locker.status is Status.LOADED:
                self.count += 1
                self.append(key, locker, f"{self.name}-{self.count}")

    def append(self, key: str, locker: Locker[Any], item: str) -> None:
        locker.data["ids"].append(item)

        def saved(ok: bool) -> None:
            if ok:
                say("acked", key=key, id=item, at=time.time())

        locker.when_saved(locker.mark_changed(), saved)


def main() -> int:
    args = parse_args()
    spec = Spec("appends", fresh, lease=1.5, autosave_period=0.2, force_timeout=3.0)
    parent = os.getppid()
    store = open_store(args.url)
    service = LockerService(store, spec)
    appender = Appender(service, args.keys.split(","), args.name)
    stop = Path(args.stop)
    give_up = time.monotonic() + args.max_seconds
    next_append = time.monotonic()
    while os.getppid() == parent and not stop.exists() and time.monotonic() < give_up:
        now = service.clock()
        appender.open_ended(time.monotonic())
        service.update(now)
        if time.monotonic() >= next_append:
            appender.append_all()
            next_append = time.monotonic() + args.append_every
        time.sleep(TICK)
    service.close(timeout=20.0)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
