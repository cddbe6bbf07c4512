"""The fleet simulation: servers as processes, players moving among them, chaos, a check.

``simulate(options)`` starts ``options.servers`` server processes on one store, drives
the workload (``sim.workload``) for ``options.duration`` seconds while killing
(SIGKILL, then a restart), freezing (SIGSTOP for one to three leases) and skewing the
servers, then stops them, opens every player once more in a final pass (so gifts,
trade messages and bonuses still in flight are applied, and a lock nobody can take
over is found), and hands the histories and the final records to ``sim.check``.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessionlocker.core.record import Record, decode
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import CorruptRecord, SessionLockerError
from sessionlocker.sim.check import check
from sessionlocker.sim.fleet import ServerConfig, WorkerProcess
from sessionlocker.sim.history import Event, HistoryWriter, Tail, read_events
from sessionlocker.sim.local import LocalTopology
from sessionlocker.sim.local import start as start_topology
from sessionlocker.sim.report import Report, summarize
from sessionlocker.sim.server import Server
from sessionlocker.sim.workload import Workload
from sessionlocker.sim.world import Timings, player_keys

__all__ = ["Options", "SimulationError", "simulate"]

#: Seconds between two ticks of the parent.
TICK = 0.05
#: Seconds a killed server stays down before it is restarted.
RESTART_AFTER = 0.5


class SimulationError(SessionLockerError):
    """The simulation could not run (a server failed to start, the store is unreachable)."""


@dataclass(frozen=True)
class Options:
    """What ``simulate`` runs; rates are per server per second."""

    store: str | None = None
    servers: int = 3
    players: int = 12
    duration: float = 25.0
    seed: int | None = None
    crash_rate: float = 0.03
    pause_rate: float = 0.03
    fault_rate: float = 0.02
    skew: float = 0.2
    out: Path | None = None
    timings: Timings = field(default_factory=Timings)
    #: A local topology to start and run on (``sim.local.TOPOLOGIES``), instead of ``store``.
    start: str | None = None
    #: SIGKILL the topology's primary a third of the way in (needs ``start``).
    failover: bool = False


#: ``progress(seconds_elapsed, counters)``, called about twice a second.
Progress = Callable[[float, dict[str, int]], None]


def simulate(options: Options, progress: Progress | None = None) -> Report:
    """Run the simulation and return its report. Never leaves a server process running."""
    seed = options.seed if options.seed is not None else random.randrange(2**31)
    if options.failover and options.start is None:
        raise SimulationError(
            "--failover kills a primary only of servers simulate started itself: add --start"
        )
    if options.start is not None and options.store is not None:
        raise SimulationError("give either --store or --start, not both")
    began = time.monotonic()
    with _run_directory(options.out) as (directory, keep), _topology(options, directory) as local:
        store = options.store or f"sqlite:///{directory / 'store.db'}"
        if local is not None:
            store = local.url
        try:
            report = _Run(options, seed, directory, store, progress, topology=local).run()
        except SimulationError as exc:
            raise SimulationError(f"{exc} (run folder kept: {directory})") from exc
        if not report.ok:  # a failed run keeps its folder, for diagnosis
            keep()
            report.directory = str(directory)
    report.duration_s = round(time.monotonic() - began, 3)
    return report


@contextmanager
def _run_directory(parent: Path | None) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A fresh run folder and a ``keep()`` that spares it: a folder under ``parent`` is
    always kept; a temporary one is removed at the end unless ``keep()`` was called
    (a failed run, or one that could not finish)."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="simulate-", dir=parent)), _nothing
        return
    directory = Path(tempfile.mkdtemp(prefix="sessionlocker-simulate-"))
    kept = False

    def keep() -> None:
        nonlocal kept
        kept = True

    try:
        yield directory, keep
    except BaseException:
        kept = True
        raise
    finally:
        if not kept:
            shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _topology(options: Options, directory: Path) -> Iterator[LocalTopology | None]:
    """The local topology ``options.start`` names, started in ``directory`` and closed
    at the end (``None`` without one)."""
    if options.start is None:
        yield None
        return
    try:
        topology = start_topology(options.start, directory / "servers")
    except SessionLockerError as exc:
        raise SimulationError(f"cannot start {options.start}: {exc}") from exc
    try:
        yield topology
    finally:
        topology.close()


def _nothing() -> None:
    """The ``keep()`` of a folder that is kept anyway."""


class _Run:
    """One run: the servers, the chaos, and what was seen of them."""

    def __init__(
        self,
        options: Options,
        seed: int,
        directory: Path,
        store: str,
        progress: Progress | None,
        *,
        topology: LocalTopology | None = None,
    ) -> None:
        self.options, self.seed, self.directory = options, seed, directory
        self.topology = topology
        #: When the primary was killed (monotonic), and per key how long after it the
        #: parent heard of the key's first confirmed save.
        self.failed_at: float | None = None
        self.after_failover: dict[str, float] = {}
        self.progress = progress
        self.rng = random.Random(seed)
        self.config = ServerConfig(store, directory, options.timings, options.fault_rate)
        self.keys = player_keys(options.players, f"{uuid.uuid4().hex[:6]}-")
        self.history = HistoryWriter(directory / "parent.jsonl", "parent")
        self.servers: dict[str, WorkerProcess] = {}
        self.down: dict[str, float] = {}
        self.tails: list[Tail] = []
        self.counters: dict[str, int] = {}

    def run(self) -> Report:
        spec = self.options.timings.spec()
        try:
            admin = LockerService(self.config.store, spec)
        except SessionLockerError as exc:
            self.history.close()
            raise SimulationError(f"cannot open the store {self.config.store}: {exc}") from exc
        try:
            workload = Workload(self.keys, admin, self.history, random.Random(self.rng.random()))
            try:
                self._drive(workload)
            finally:
                for server in self.servers.values():
                    server.stop(timeout=8.0)
            self._final_pass(admin)
            records = self._records(admin)
        finally:
            admin.close(timeout=2.0)
            self.history.close()
        events = self._events()
        findings: list[str] = []
        violations = check(events, records, findings)
        report = summarize(
            events,
            violations,
            counters={**self.counters, **workload.counts},
            store=self.config.store,
            seed=self.seed,
            options=self.options,
            directory=self.directory if self.options.out is not None else None,
        )
        report.findings = findings
        report.failovers = self.counters.get("failovers", 0)
        if self.after_failover:
            report.failover_recovery_ms = max(self.after_failover.values())
        return report

    # ------------------------------------------------------------------ the run

    def _drive(self, workload: Workload) -> None:
        for number in range(1, self.options.servers + 1):
            self._start(f"S{number}")
        began = last = time.monotonic()
        next_progress = began
        while (now := time.monotonic()) < began + self.options.duration:
            self._chaos(now, now - last, workload)
            if self._failover_due(now - began):
                self._fail_primary(now)
            live = [name for name, server in self.servers.items() if _usable(server)]
            workload.tick(time.time(), now - last, live, self._send)
            for tail in self.tails:
                for event in tail.new_events():
                    workload.heard(event)
                    self._heard(event)
            if self.progress is not None and now >= next_progress:
                self.progress(now - began, {**self.counters, **workload.counts})
                next_progress = now + 0.5
            last = now
            time.sleep(TICK)

    def _failover_due(self, elapsed: float) -> bool:
        due = self.options.failover and self.topology is not None and self.failed_at is None
        return due and elapsed >= self.options.duration / 3

    def _fail_primary(self, now: float) -> None:
        """SIGKILL the topology's primary; the servers' own failover promotes a replica."""
        assert self.topology is not None
        try:
            self.topology.fail_primary()
        except SessionLockerError as exc:
            raise SimulationError(f"cannot kill a primary: {exc}") from exc
        self.failed_at = now
        self._note("failovers", "failover", "primary")

    def _start(self, name: str) -> None:
        skew = self.options.skew
        offset = self.rng.uniform(-skew, skew)
        rate = 1.0 + self.rng.uniform(-1, 1) * min(0.05, skew / 10)
        server = WorkerProcess.start(
            name, self.config, seed=self.rng.randrange(2**31), skew=(offset, rate)
        )
        if name not in self.servers:
            self.tails.append(Tail(server.history_path))
        self.servers[name] = server

    def _send(self, name: str, command: dict[str, Any]) -> bool:
        server = self.servers.get(name)
        return server is not None and server.send(command)

    def _chaos(self, now: float, dt: float, workload: Workload) -> None:
        lease = self.options.timings.lease
        for name, server in list(self.servers.items()):
            if name in self.down:
                if now >= self.down[name]:
                    del self.down[name]
                    self._start(name)
                    self.history.write("restart", server=name)
            elif server.paused_until is not None:
                if now >= server.paused_until:
                    server.resume()
                    self.history.write("resume", server=name)
            elif not server.running:
                raise SimulationError(f"server {name} exited by itself: {server.log_tail()}")
            elif self.rng.random() < self.options.crash_rate * dt:
                server.kill()
                self.down[name] = now + RESTART_AFTER
                self._note("crashes", "crash", name)
                self._rehome(name, workload, share=1.0)
            elif self.rng.random() < self.options.pause_rate * dt:
                server.pause(now + self.rng.uniform(1.0, 3.0) * lease)
                self._note("pauses", "pause", name)
                self._rehome(name, workload, share=0.5)

    def _rehome(self, name: str, workload: Workload, share: float) -> None:
        """Move players off a dead or frozen server: another server takes them over."""
        others = [other for other, server in self.servers.items() if _usable(server)]
        others = [other for other in others if other != name and other not in self.down]
        for key, where in list(workload.where.items()):
            if where == name and others and self.rng.random() < share:
                workload.place(key, self.rng.choice(others), self._send, "takeover")

    def _note(self, counter: str, event: str, server: str) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + 1
        self.history.write(event, server=server)

    def _heard(self, event: Event) -> None:
        kind = str(event["event"])
        if kind in ("confirmed", "granted", "loaded"):
            self.counters[kind] = self.counters.get(kind, 0) + 1
        if kind == "confirmed" and self.failed_at is not None:
            waited = round((time.monotonic() - self.failed_at) * 1000, 1)
            self.after_failover.setdefault(str(event.get("key")), waited)

    # ------------------------------------------------------------------ the end

    def _final_pass(self, admin: LockerService) -> None:
        """Open every player three times in one last service (its own history file)."""
        history = HistoryWriter(self.directory / "final.jsonl", "final")
        service = LockerService(self.config.store, admin.spec)
        server = Server(service, history, self.seed)
        timings = self.options.timings
        try:
            for _ in range(3):
                for key in self.keys:
                    server.join(key)
                loaded = lambda: all(p.locker.is_available() for p in server.players.values())  # noqa: E731
                service.run_until(loaded, timeout=timings.lease + timings.force_timeout + 2.0)
                for player in server.players.values():
                    if player.locker.is_available():
                        player.locker.mark_changed()
                service.run_until(lambda: False, timeout=0.3)
                for key in self.keys:
                    server.leave(key)
                service.run_until(lambda: not service.lockers(), timeout=5.0)
        finally:
            service.close(timeout=5.0)
            history.close()

    def _records(self, admin: LockerService) -> dict[str, Record | None]:
        records: dict[str, Record | None] = {}
        for key in self.keys:
            stored = admin.store.read(admin.spec.store_key(key))
            try:
                records[key] = None if stored is None else decode(stored.value)
            except CorruptRecord:
                records[key] = None
        return records

    def _events(self) -> list[Event]:
        events: list[Event] = []
        for path in sorted(self.directory.glob("*.jsonl")):
            events.extend(read_events(path))
        return events


def _usable(server: WorkerProcess) -> bool:
    return server.running and server.paused_until is None
