"""Notifications make handoffs and remote changes immediate, across processes.

The holder (``tests/procs/notified.py``, its own OS process) autosaves, polls and waits
for force all once a minute. A remote change sent from this process must be applied
there, and a ``force`` open from this process must get the record, in about a second:
only a store notification (Redis pub/sub, PostgreSQL LISTEN/NOTIFY) can bring either
that fast. The memory store notifies within one process: two services share it here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backends import server_url
from sessionlocker import LoadMode, LockerService, Status
from sessionlocker.stores import MemoryStore

sys.path.insert(0, str(Path(__file__).parent / "procs"))
from notified import SLOW

CHILD = Path(__file__).parent / "procs" / "notified.py"
QUICK = 3.0  # seconds; the holder's own periods are 60


class Holder:
    def __init__(self, url: str, key: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), url, key],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.process.stdout.readline()
            if not line:
                break
            self.events.append(json.loads(line))
            if self.events[-1]["event"] == event:
                return self.events[-1]
        raise AssertionError(f"the holder did not report {event!r}: {self.events}")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_across_processes_a_remote_change_and_a_force_handoff_arrive_at_once(
    backend: str,
) -> None:
    url = server_url(backend)
    key = f"k{time.monotonic_ns()}"
    holder = Holder(url, key)
    try:
        holder.wait_for("loaded", 30)
        with LockerService(url, SLOW) as service:
            sent = time.time()
            service.send(key, "note", "hello")
            applied = holder.wait_for("note", 10)
            assert applied["body"] == "hello"
            assert applied["at"] - sent < QUICK
            started = time.monotonic()
            with service.session(key, LoadMode.FORCE, timeout=20) as locker:
                took = time.monotonic() - started
                assert locker.data["notes"] == ["hello"]  # the holder saved it on release
            holder.wait_for("released", 5)
        assert took < QUICK, f"force handoff took {took:.2f} s; the holder's periods are 60 s"
    finally:
        holder.stop()


def test_in_one_process_a_memory_store_wakes_the_holder_and_the_waiter() -> None:
    store = MemoryStore()
    with LockerService(store, SLOW) as holder, LockerService(store, SLOW) as opener:
        holder.on_message("note", lambda locker, message: locker.data["notes"].append(1))
        held = holder.locker("k")
        held.acquire()
        assert holder.run_until(lambda: held.status is Status.LOADED, 5)
        opener.send("k", "note", None)
        assert holder.run_until(lambda: held.data["notes"] == [1], QUICK)
        wanted = opener.locker("k")
        wanted.acquire(LoadMode.FORCE)
        end = time.monotonic() + QUICK
        while time.monotonic() < end and wanted.status is not Status.LOADED:
            holder.update()
            opener.update()
            time.sleep(0.005)
        assert wanted.status is Status.LOADED
        assert held.status is Status.IDLE
        assert wanted.data["notes"] == [1]
