"""The two-worker demo: hand players back and forth, SIGKILL one worker, check the store.

Two worker processes share one SQLite file and keep taking the same player keys from
each other with mode ``force``. Halfway through, the parent SIGKILLs one of them while
it holds locks; the other takes those over once the dead worker's lease has expired
and carries on. At the end the survivor is stopped (it releases everything), and the
parent reads every record straight from the file and checks the invariants of
``sessionlocker.sim.check`` against what the workers say was confirmed.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sessionlocker.core.record import Record, decode
from sessionlocker.errors import CorruptRecord, SessionLockerError
from sessionlocker.sim.check import (
    Findings,
    check_confirmed,
    check_locks,
    check_records,
    check_takeovers,
)
from sessionlocker.sim.fleet import WorkerProcess
from sessionlocker.sim.history import History, Loaded
from sessionlocker.sim.report import Kill, Report
from sessionlocker.sim.world import Timings, player_keys
from sessionlocker.stores import SQLiteStore

__all__ = ["Options", "SimulationError", "simulate"]

#: The workers' names, as written in every log entry they make.
WORKERS = ("A", "B")
#: How often the parent looks at the store and the histories, in seconds.
LOOK_EVERY = 0.02
#: Longest wait for the workers to start, in seconds.
START_TIMEOUT = 20.0


class SimulationError(SessionLockerError):
    """The simulation could not run (a worker failed to start or died by itself)."""


@dataclass(frozen=True)
class Options:
    """What ``simulate`` runs. ``directory``: keep the files there (else a temporary one)."""

    players: int = 4
    duration: float = 6.0
    seed: int | None = None
    directory: Path | None = None
    timings: Timings = field(default_factory=Timings)


def simulate(options: Options) -> Report:
    """Run the demo and return its report. Never leaves a worker process running."""
    seed = options.seed if options.seed is not None else random.randrange(2**31)
    began = time.monotonic()
    with _run_directory(options.directory) as directory:
        store = SQLiteStore(directory / "store.db")
        try:
            run = _Run(options, seed, directory, store)
            report = run.run()
        finally:
            store.close()
    report.elapsed = round(time.monotonic() - began, 3)
    return report


@contextmanager
def _run_directory(parent: Path | None) -> Iterator[Path]:
    if parent is not None:
        yield Path(tempfile.mkdtemp(prefix="simulate-", dir=parent))
        return
    with tempfile.TemporaryDirectory(prefix="sessionlocker-simulate-") as directory:
        yield Path(directory)


class _Run:
    """One run: the workers, the kill, and what was seen of them."""

    def __init__(self, options: Options, seed: int, directory: Path, store: SQLiteStore) -> None:
        self.options = options
        self.seed = seed
        self.directory = directory
        self.store = store
        self.keys = player_keys(options.players)
        self.spec = options.timings.spec()
        self.rng = random.Random(seed)
        self.findings = Findings()
        #: wall-clock time of the kill, and the keys the victim died holding (with epochs)
        self.killed_wall = 0.0
        self.victim_session = ""
        self.held: dict[str, int] = {}

    def run(self) -> Report:
        timings = self.options.timings
        workers: list[WorkerProcess] = []
        try:
            for name in WORKERS:
                workers.append(
                    WorkerProcess.start(
                        name,
                        db=self.store.path,
                        directory=self.directory,
                        players=self.options.players,
                        seed=self.rng.randrange(2**31),
                        timings=timings,
                    )
                )
            started = self._wait_started(workers)
            victim = self.rng.choice(workers)
            survivor = next(worker for worker in workers if worker is not victim)
            self._wait(lambda: False, started + self.options.duration / 2, [survivor, victim])
            kill = self._kill(victim, started)
            self._wait_takeovers(kill, survivor)
            self._wait(lambda: False, started + self.options.duration, [survivor])
            code = survivor.stop(timeout=10.0)
            self.findings.expect(
                code == 0,
                f"worker {survivor.name} did not release everything when stopped "
                f"(exit code {code}): {survivor.log_tail()}",
            )
            return self._report(workers, kill)
        finally:
            for worker in workers:
                worker.kill()

    # ------------------------------------------------------------------ phases

    def _wait_started(self, workers: Sequence[WorkerProcess]) -> float:
        """Wait until every worker has written its first line; the monotonic time then."""
        deadline = time.monotonic() + START_TIMEOUT
        self._wait(
            lambda: all(worker.history().started is not None for worker in workers),
            deadline,
            workers,
        )
        if time.monotonic() >= deadline:
            raise SimulationError(f"the workers did not start within {START_TIMEOUT:g} s")
        return time.monotonic()

    def _kill(self, victim: WorkerProcess, started: float) -> Kill:
        """SIGKILL ``victim`` as soon as it holds a lock (within a few seconds)."""
        self._wait(lambda: bool(self._held_by(victim.session)), time.monotonic() + 3.0, [victim])
        at = round(time.monotonic() - started, 3)
        self.killed_wall = time.time()
        self.victim_session = victim.session
        victim.kill()
        self.held = self._held_by(victim.session)
        return Kill(victim.name, at, sorted(self.held))

    def _wait_takeovers(self, kill: Kill, survivor: WorkerProcess) -> None:
        """Wait until the survivor has loaded every key the victim died holding.

        Meanwhile, note until when the store still judged the victim's lease alive.
        """
        deadline = time.monotonic() + self.options.timings.lease + 3.0
        session = self.victim_session
        expired = False

        def all_taken() -> bool:
            nonlocal expired
            if not expired:
                asked = time.time()
                expired = self.store.get_session(session).expired is not False
                if not expired:
                    kill.lease_alive_for = round(asked - self.killed_wall, 3)
            for loaded in survivor.history().loaded:
                epoch = self.held.get(loaded.key)
                if epoch is not None and loaded.epoch > epoch and loaded.key not in kill.takeovers:
                    kill.takeovers[loaded.key] = round(loaded.t - self.killed_wall, 3)
            return expired and all(key in kill.takeovers for key in kill.held)

        self._wait(all_taken, deadline, [survivor])

    def _wait(
        self, done: Callable[[], bool], deadline: float, workers: Sequence[WorkerProcess]
    ) -> None:
        """Look every ``LOOK_EVERY`` until ``done()`` or ``deadline``; fail if a worker died."""
        while not done() and time.monotonic() < deadline:
            for worker in workers:
                if not worker.running:
                    raise SimulationError(
                        f"worker {worker.name} exited by itself with code "
                        f"{worker.process.returncode}: {worker.log_tail()}"
                    )
            time.sleep(LOOK_EVERY)

    # ------------------------------------------------------------------ the store

    def _held_by(self, session: str) -> dict[str, int]:
        """The keys whose lock names ``session``, with the lock's epoch."""
        held: dict[str, int] = {}
        for key, record in self._records(quiet=True).items():
            if record is not None and record.lock is not None and record.lock.session == session:
                held[key] = record.lock.epoch
        return held

    def _records(self, *, quiet: bool = False) -> dict[str, Record | None]:
        """Every player's record as stored now (None: absent or corrupt)."""
        records: dict[str, Record | None] = {}
        for key in self.keys:
            stored = self.store.read(self.spec.store_key(key))
            records[key] = None
            if stored is None:
                continue
            try:
                records[key] = decode(stored.value)
            except CorruptRecord as exc:
                if not quiet:
                    self.findings.expect(False, f"{key}: the stored record is corrupt: {exc}")
        return records

    # ------------------------------------------------------------------ the verdict

    def _report(self, workers: Sequence[WorkerProcess], kill: Kill) -> Report:
        findings = self.findings
        histories = {worker.name: worker.history() for worker in workers}
        records = self._records()
        confirmed = [change for history in histories.values() for change in history.confirmed]
        findings.expect(bool(confirmed), "no change was confirmed saved by any worker")
        check_confirmed(findings, records, confirmed)
        check_records(findings, records)
        check_locks(findings, records, {worker.session: worker.name for worker in workers})
        findings.expect(bool(kill.held), f"worker {kill.worker} held no lock when killed")
        check_takeovers(findings, kill.held, kill.takeovers, kill.lease_alive_for)
        for name, history in histories.items():
            for failure in history.failures:
                findings.expect(False, f"worker {name} had a record refused: {failure}")
        return Report(
            database=str(self.store.path),
            kept=self.options.directory is not None,
            players=self.options.players,
            duration=self.options.duration,
            seed=self.seed,
            lease=self.options.timings.lease,
            workers=[worker.name for worker in workers],
            kill=kill,
            handoffs=count_handoffs(histories.values()),
            confirmed={name: len(history.confirmed) for name, history in histories.items()},
            lost_locks=sum(history.ended.get("lost", 0) for history in histories.values()),
            checks=findings.checks,
            violations=findings.violations,
            elapsed=0.0,
        )


def count_handoffs(histories: Iterable[History]) -> int:
    """How many times a key went from one worker to the other, by lock epoch."""
    loads: dict[str, list[Loaded]] = {}
    for history in histories:
        for loaded in history.loaded:
            loads.setdefault(loaded.key, []).append(loaded)
    handoffs = 0
    for entries in loads.values():
        entries.sort(key=lambda loaded: loaded.epoch)
        handoffs += sum(1 for a, b in itertools.pairwise(entries) if a.worker != b.worker)
    return handoffs
