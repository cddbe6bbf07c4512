"""Real processes on a real SQLite file: a holder killed (SIGKILL) or frozen (SIGSTOP).

The holder is ``tests/procs/holder.py``, run with this interpreter; it reports what it
loaded and what was confirmed saved as JSON lines on its stdout. The other side is this
test process, through a ``LockerService`` on the same file.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionlocker import Locker, LockerService, Spec, Status
from sessionlocker.core.record import Record, decode
from sessionlocker.stores import SQLiteStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals"),
]

HOLDER = Path(__file__).parent / "procs" / "holder.py"
#: The session lease of both sides, in seconds.
LEASE = 1.5
AUTOSAVE = 0.2
POLL = 0.05
KEYS = ["k1", "k2", "k3"]


def fresh() -> dict[str, Any]:
    return {"count": 0, "log": []}


SPEC = Spec(
    "things",
    fresh,
    lease=LEASE,
    autosave_period=AUTOSAVE,
    poll_period=POLL,
    force_timeout=30.0,
)


class Child:
    """A holder process and the events it reported, read by a thread as they come."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.stderr_path = directory / "holder.stderr"
        command = [sys.executable, str(HOLDER), *args]
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def find(self, event: str) -> dict[str, Any] | None:
        """The first reported event named ``event``, if any yet."""
        with self._changed:
            return next((e for e in self.events if e["event"] == event), None)

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        """Block until the child reports ``event``; fail with its stderr otherwise."""
        with self._changed:
            self._changed.wait_for(lambda: self._ended or self.find(event) is not None, timeout)
        found = self.find(event)
        if found is None:
            errors = self.stderr_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"the holder never reported {event!r}; it said {self.events}; {errors}")
        return found

    def confirmed(self, before: str | None = None) -> list[tuple[str, int]]:
        """Every (key, n) reported confirmed, only those before event ``before`` if given."""
        found = []
        with self._changed:
            for event in self.events:
                if event["event"] == before:
                    break
                if event["event"] == "confirmed":
                    found.append((event["key"], event["n"]))
        return found

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self) -> None:
        """Kill the child (whatever its state, stopped too), reap it, read all it said."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def service(db: Path) -> Iterator[LockerService]:
    store = SQLiteStore(db)
    service = LockerService(store, SPEC, lease_id="test-B")
    try:
        yield service
    finally:
        service.close(timeout=5.0)
        store.close()


def start_holder(tmp_path: Path, db: Path, keys: list[str], *extra: str) -> Child:
    return Child(
        tmp_path,
        f"--db={db}",
        f"--keys={','.join(keys)}",
        "--name=A",
        "--session=holder-A",
        f"--lease={LEASE}",
        f"--autosave={AUTOSAVE}",
        f"--poll={POLL}",
        *extra,
    )


def stored(db: Path, key: str) -> Record:
    store = SQLiteStore(db)
    try:
        versioned = store.read(SPEC.store_key(key))
    finally:
        store.close()
    assert versioned is not None
    return decode(versioned.value)


def assert_has(data: dict[str, Any], worker: str, n: int) -> None:
    """Increment ``n`` by ``worker`` sits at ``log[n - 1]``."""
    log = data["log"]
    assert n <= len(log), f"change {n} by {worker} is missing: the log has {len(log)} entries"
    assert log[n - 1] == [worker, n]


def process_state(pid: int) -> str:
    """The state letter of a process from /proc (``T``: stopped); ``?`` when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


def write_lock_free(db: Path) -> bool:
    """True if nobody holds the database's write lock right now."""
    connection = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
    return True


def freeze(child: Child, db: Path) -> float:
    """SIGSTOP the child at a moment it holds no SQLite write transaction.

    A process frozen inside a write transaction would block every other writer of the
    file (that is SQLite, not the locker), so such a moment is skipped: resume, retry.
    Returns the monotonic time of the freeze.
    """
    for _ in range(50):
        frozen_at = time.monotonic()
        child.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 2.0
        while process_state(child.process.pid) not in ("T", "t", "?"):
            assert time.monotonic() < deadline, "the holder did not stop"
            time.sleep(0.005)
        if write_lock_free(db):
            return frozen_at
        child.signal(signal.SIGCONT)
        time.sleep(0.02)
    pytest.fail("the holder was always inside a write transaction")


def load_times(lockers: dict[str, Locker]) -> dict[str, float]:
    """Monotonic time at which each locker loads (filled in as it happens)."""
    times: dict[str, float] = {}
    for key, locker in lockers.items():
        locker.on("loaded", lambda _, key=key: times.setdefault(key, time.monotonic()))
    return times


def test_sigkilled_holder_is_taken_over_after_its_lease_with_every_confirmed_change(
    tmp_path: Path, db: Path, service: LockerService
) -> None:
    child = start_holder(tmp_path, db, KEYS, "--ready-after=3")
    try:
        ready = child.wait_for("ready", timeout=15.0)
        assert ready["available"] is True
        epochs = {e["key"]: e["epoch"] for e in child.events if e["event"] == "loaded"}

        # While the holder lives, a "repeat" waiter must not get in, however long it waits.
        lockers = {key: service.locker(key) for key in KEYS}
        loaded_at = load_times(lockers)
        for locker in lockers.values():
            locker.acquire("repeat")
        service.run_until(lambda: False, timeout=1.5 * LEASE)
        assert loaded_at == {}  # never loaded, not even for a moment
        assert all(locker.status in (Status.WAITING, Status.LOADING) for locker in lockers.values())
        assert child.process.poll() is None

        killed_at = time.monotonic()
        child.signal(signal.SIGKILL)
        child.finish()
        confirmed = child.confirmed()
        assert len(confirmed) >= 3 * len(KEYS)

        loaded = service.run_until(
            lambda: all(locker.status is Status.LOADED for locker in lockers.values()),
            timeout=LEASE + 4.0,
        )
        assert loaded, {key: locker.status for key, locker in lockers.items()}
        for key, locker in lockers.items():
            waited = loaded_at[key] - killed_at
            assert LEASE / 2 <= waited <= LEASE + 2.0, f"{key} taken over after {waited:.2f} s"
            assert locker.token is not None
            assert locker.token > epochs[key]
            for confirmed_key, n in confirmed:
                if confirmed_key == key:
                    assert_has(locker.data, "A", n)
    finally:
        child.finish()


def test_sigstopped_holder_is_fenced_out_after_it_resumes(
    tmp_path: Path, db: Path, service: LockerService
) -> None:
    child = start_holder(tmp_path, db, ["k1"], "--ready-after=3")
    try:
        assert child.wait_for("ready", timeout=15.0)["available"] is True
        service.run_until(lambda: False, timeout=0.2)  # our own lease is up

        frozen_at = freeze(child, db)
        before_freeze = child.confirmed()
        locker = service.locker("k1")
        loaded_at = load_times({"k1": locker})
        locker.acquire("repeat")
        assert service.run_until(lambda: locker.status is Status.LOADED, timeout=LEASE + 4.0)
        waited = loaded_at["k1"] - frozen_at
        assert LEASE / 2 <= waited <= LEASE + 2.0, f"taken over after {waited:.2f} s"
        for _, n in before_freeze:
            assert_has(locker.data, "A", n)

        # Our own changes, confirmed saved while the holder is still frozen.
        ours: list[int] = []
        for _ in range(3):
            n = locker.data["count"] + 1
            locker.data["count"] = n
            locker.data["log"].append(["B", n])
            locker.when_saved(locker.mark_changed(), lambda ok, n=n: ok and ours.append(n))
        locker.force_save()
        assert service.run_until(lambda: len(ours) == 3, timeout=3.0)
        service.run_until(
            lambda: False, timeout=max(0.01, frozen_at + 2.5 * LEASE - time.monotonic())
        )

        child.signal(signal.SIGCONT)
        assert service.run_until(lambda: child.find("lost") is not None, timeout=5.0)
        resumed = child.find("resumed")
        assert resumed is not None, child.events
        assert resumed["gap"] >= 2 * LEASE
        assert resumed["available"] == {"k1": False}  # fenced itself before writing
        # Usually it does not know yet; if the freeze cut a frame in two, that frame may
        # already have sent its save and read the answer.
        assert resumed["status"]["k1"] in ("loaded", "lost")
        service.run_until(lambda: False, timeout=4 * AUTOSAVE)  # let it try some more

        record = stored(db, "k1")
        assert record.lock is not None
        assert (record.lock.session, record.epoch) == ("test-B", locker.token)
        assert record.stamp is not None
        assert record.stamp.session == "test-B"
        log = record.data["log"]
        first_ours = next(i for i, entry in enumerate(log) if entry[0] == "B")
        assert all(entry[0] == "B" for entry in log[first_ours:]), log[first_ours:]
        for n in ours:
            assert_has(record.data, "B", n)
        # Whatever it confirmed (also after resuming: a save that committed before the
        # freeze, its answer read after) was in the data we loaded, before our entries.
        for _, n in child.confirmed():
            assert n <= first_ours
            assert_has(record.data, "A", n)
        assert child.process.poll() is None  # it carried on, fenced, not crashed

        locker.release()
        assert service.run_until(lambda: locker.status is Status.IDLE, timeout=3.0)
        final = stored(db, "k1")
        assert final.lock is None
        assert final.data == record.data
    finally:
        child.finish()


def test_children_are_gone(tmp_path: Path) -> None:
    """The helper itself never leaves a process behind, even one that is stopped."""
    child = start_holder(tmp_path, tmp_path / "other.db", ["k1"])
    child.wait_for("loaded", timeout=15.0)
    child.signal(signal.SIGSTOP)
    child.finish()
    assert child.process.returncode == -signal.SIGKILL
    assert process_state(child.process.pid) == "?"
