"""The outcome of a simulation, for people (``text()``) and for programs (``as_dict()``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Kill", "Report"]


@dataclass
class Kill:
    """The SIGKILL of one worker while it held locks."""

    #: the killed worker
    worker: str
    #: seconds after both workers had started
    at: float
    #: the keys it held when it died
    held: list[str]
    #: seconds from the kill to each held key's takeover by the other worker
    takeovers: dict[str, float] = field(default_factory=dict)
    #: seconds after the kill the store last judged the dead worker's lease alive
    lease_alive_for: float = 0.0

    @property
    def takeover_seconds(self) -> float | None:
        """Seconds until the last of its keys was taken over (None: not all were)."""
        if not self.held or any(key not in self.takeovers for key in self.held):
            return None
        return max(self.takeovers[key] for key in self.held)


@dataclass
class Report:
    """What happened and what the checks found."""

    database: str
    #: False when the database was in a temporary folder, removed after the run
    kept: bool
    players: int
    duration: float
    seed: int
    lease: float
    workers: list[str]
    kill: Kill | None
    handoffs: int
    confirmed: dict[str, int]
    lost_locks: int
    checks: int
    violations: list[str]
    elapsed: float

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.violations

    @property
    def confirmed_changes(self) -> int:
        """Confirmed increments of every worker together."""
        return sum(self.confirmed.values())

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        report = asdict(self)
        report["kill"] = None
        if self.kill is not None:
            report["kill"] = {**asdict(self.kill), "takeover_seconds": self.kill.takeover_seconds}
        report.update(
            ok=self.ok,
            confirmed_changes=self.confirmed_changes,
            takeover_seconds=None if self.kill is None else self.kill.takeover_seconds,
            violation_count=len(self.violations),
        )
        return report

    def text(self) -> str:
        """A short report for a terminal."""
        per_worker = ", ".join(f"{name} {count}" for name, count in self.confirmed.items())
        lines = [
            f"simulate: {len(self.workers)} worker processes, {self.players} players, "
            f"{self.duration:g} s, seed {self.seed}",
            f"  database:          {self.database}{'' if self.kept else ' (removed)'}",
            f"  handoffs:          {self.handoffs} (between the workers, by force)",
            f"  confirmed changes: {self.confirmed_changes} ({per_worker})",
            *self._kill_lines(),
            f"  violations:        {len(self.violations)}/{self.checks} checks",
        ]
        lines.extend(f"    - {problem}" for problem in self.violations)
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict} in {self.elapsed:.1f} s")
        return "\n".join(lines)

    def _kill_lines(self) -> list[str]:
        kill = self.kill
        if kill is None:
            return ["  kill:              none happened"]
        held = ", ".join(kill.held) or "nothing"
        who = f"worker {kill.worker}"
        lines = [f"  kill:              {who} (SIGKILL) at {kill.at:.2f} s, holding {held}"]
        seconds = kill.takeover_seconds
        if seconds is None:
            lines.append("  takeover:          not observed for every key")
        else:
            lease = f"lease {self.lease:g} s, seen alive until {kill.lease_alive_for:.2f} s"
            lines.append(f"  takeover:          {seconds:.2f} s after the kill ({lease})")
        if self.lost_locks:
            lines.append(f"  locks lost:        {self.lost_locks} (a live worker's lease ran out)")
        return lines
