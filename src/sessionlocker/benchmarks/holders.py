"""Handles on a running holder (``holder.py``): in a child process, or in a thread.

A store shared between processes (SQLite, Redis, PostgreSQL) gets a real child process,
so a handoff crosses processes and a takeover follows a real SIGKILL. A memory store
lives in one process only, so there the holder runs in a thread of the benchmark
process, and "killing" it means it stops driving frames at once (no release, no lease
renewal, nothing closed) — what a crash looks like from the store.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
from typing import IO, Any, Protocol

from sessionlocker.benchmarks.holder import HolderLoop, Timings
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import Store

__all__ = ["Holder", "ProcessHolder", "ThreadHolder"]


class Holder(Protocol):
    """A holder the benchmark can wait for, kill, and stop."""

    def wait_loads(self, count: int, timeout: float) -> None:
        """Block until the holder has loaded the key ``count`` times in all."""
        ...

    def allow(self) -> None:
        """Let the holder load the key again once it has let go of it."""
        ...

    def kill(self) -> None:
        """Crash the holder now: it writes nothing more, and releases nothing."""
        ...

    def stop(self) -> None:
        """End the holder cleanly (or reap it after ``kill``)."""
        ...


class _Events:
    """Events reported by a holder, and a way to wait for them."""

    def __init__(self) -> None:
        self.loads = 0
        self.ended = False
        self.changed = threading.Condition()

    def add(self, event: dict[str, Any]) -> None:
        with self.changed:
            if event.get("event") == "loaded":
                self.loads += 1
            self.changed.notify_all()

    def end(self) -> None:
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_loads(self, count: int, timeout: float, describe: str) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.loads >= count or self.ended, timeout)
            if self.loads < count:
                raise SessionLockerError(
                    f"the holder loaded {self.loads} times, not {count}, in {timeout} s; {describe}"
                )


class ProcessHolder:
    """``python -m sessionlocker.benchmarks.holder`` in a child process."""

    def __init__(
        self, url: str, key: str, timings: Timings, *, notifications: bool, max_seconds: float
    ) -> None:
        # Closed in ``stop``: it must outlive this method (the child writes to it).
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        command = [
            sys.executable,
            "-m",
            "sessionlocker.benchmarks.holder",
            f"--store={url}",
            f"--key={key}",
            *timings.args(),
            f"--notifications={'on' if notifications else 'off'}",
            f"--max-seconds={max_seconds}",
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.events = _Events()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.add(json.loads(line))
        self.events.end()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-1500:]

    def wait_loads(self, count: int, timeout: float) -> None:
        try:
            self.events.wait_loads(count, timeout, "it is a child process")
        except SessionLockerError as exc:
            raise SessionLockerError(f"{exc}; its stderr: {self._stderr_tail()}") from None

    def allow(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a killed child's pipe may be broken
                    pipe.close()
        self._stderr.close()


class ThreadHolder:
    """A ``HolderLoop`` on ``store`` in a thread of this process."""

    def __init__(self, store: Store, key: str, timings: Timings) -> None:
        self.events = _Events()
        self.loop = HolderLoop(store, key, timings, self.events.add)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop.run(lambda: False)
        finally:
            self.events.end()

    def wait_loads(self, count: int, timeout: float) -> None:
        self.events.wait_loads(count, timeout, "it is a thread of this process")

    def allow(self) -> None:
        self.loop.allow()

    def kill(self) -> None:
        self.loop.stop()
        self._thread.join(timeout=10)

    def stop(self) -> None:
        self.loop.stop()
        self._thread.join(timeout=10)
        self.loop.close()
