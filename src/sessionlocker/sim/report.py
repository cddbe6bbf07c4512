"""The outcome of a simulation, for people (``text()``) and for programs (``as_dict()``)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionlocker.sim.check import VIOLATIONS
from sessionlocker.sim.history import Event

if TYPE_CHECKING:
    from sessionlocker.sim.run import Options

__all__ = ["Report", "handoff_latencies", "percentile", "summarize"]


@dataclass
class Report:
    """What happened and what the checker found."""

    store: str
    seed: int
    servers: int
    players: int
    planned_s: float
    violations: dict[str, int]
    operations: int = 0
    saves: int = 0
    handoffs: int = 0
    handoff_ms: dict[str, float | None] = field(default_factory=dict)
    crashes: int = 0
    pauses: int = 0
    takeovers: int = 0
    purchases: int = 0
    purchases_granted: int = 0
    deliveries: int = 0
    bonuses: int = 0
    trades: int = 0
    faults_injected: int = 0
    #: Primaries killed (``--failover``), and the milliseconds from the kill until the
    #: parent heard of a confirmed save of every key saved after it (the slowest key).
    failovers: int = 0
    failover_recovery_ms: float | None = None
    directory: str | None = None
    duration_s: float = 0.0
    #: One line per violation found: key, epochs, servers and times.
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no violation was counted."""
        return not any(self.violations.values())

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "ok": self.ok,
            "violations": dict(self.violations),
            "operations": self.operations,
            "saves": self.saves,
            "handoffs": self.handoffs,
            "handoff_ms": dict(self.handoff_ms),
            "crashes": self.crashes,
            "pauses": self.pauses,
            "takeovers": self.takeovers,
            "purchases": self.purchases,
            "purchases_granted": self.purchases_granted,
            "deliveries": self.deliveries,
            "bonuses": self.bonuses,
            "trades": self.trades,
            "faults_injected": self.faults_injected,
            "failovers": self.failovers,
            "failover_recovery_ms": self.failover_recovery_ms,
            "store": self.store,
            "seed": self.seed,
            "servers": self.servers,
            "players": self.players,
            "duration_s": self.duration_s,
            "directory": self.directory,
            "findings": list(self.findings),
        }

    def text(self) -> str:
        """The human report."""
        rate = self.operations / self.duration_s if self.duration_s else 0.0
        p50, p99 = self.handoff_ms.get("p50"), self.handoff_ms.get("p99")
        lines = [
            f"simulate: {self.servers} server processes, {self.players} players, "
            f"{self.planned_s:g} s, seed {self.seed}",
            f"  store:        {self.store}",
            f"  operations:   {self.operations} ({rate:.0f}/s); saves confirmed {self.saves}",
            f"  handoffs:     {self.handoffs}, p50 {_ms(p50)}, p99 {_ms(p99)}",
            f"  purchases:    {self.purchases_granted} granted of {self.purchases} "
            f"({self.deliveries} deliveries, duplicates included)",
            f"  bonuses:      {self.bonuses} admin sends; trades offered {self.trades}",
            f"  chaos:        {self.crashes} crashes, {self.pauses} pauses, "
            f"{self.takeovers} takeovers, {self.faults_injected} faults injected",
        ]
        if self.failovers:
            lines.append(
                f"  failover:     {self.failovers} primary killed; every key saved again "
                f"within {_ms(self.failover_recovery_ms)}"
            )
        lines += [
            "  invariants:",
        ]
        for name in VIOLATIONS:
            count = self.violations.get(name, 0)
            lines.append(f"    {name:<24} {count}{'' if count == 0 else '  <-- VIOLATED'}")
        if self.findings:
            lines.append("  violations found:")
            lines.extend(f"    {finding}" for finding in self.findings)
        if self.directory is not None:
            lines.append(f"  histories:    {self.directory}")
        lines.append(f"{'OK' if self.ok else 'FAILED'} in {self.duration_s:.1f} s")
        return "\n".join(lines)


def summarize(
    events: Sequence[Event],
    violations: dict[str, int],
    *,
    counters: Mapping[str, int],
    store: str,
    seed: int,
    options: Options,
    directory: Path | None,
) -> Report:
    """Build the report from every history line and the parent's counters."""
    kinds: dict[str, int] = defaultdict(int)
    for event in events:
        kinds[str(event["event"])] += 1
    latencies = handoff_latencies(events)
    granted = {str(event["purchase"]) for event in events if event["event"] == "granted"}
    report = Report(
        store=store,
        seed=seed,
        servers=options.servers,
        players=options.players,
        planned_s=options.duration,
        violations=violations,
        saves=kinds["confirmed"],
        handoffs=len(latencies),
        handoff_ms={"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        crashes=counters.get("crashes", 0),
        pauses=counters.get("pauses", 0),
        takeovers=kinds["takeover"],
        purchases=counters.get("purchases", 0),
        purchases_granted=len(granted),
        deliveries=counters.get("deliveries", 0),
        bonuses=kinds["sent"],
        trades=kinds["offered"],
        faults_injected=_faults(events),
        directory=None if directory is None else str(directory),
    )
    report.operations = report.saves + len(granted) + report.bonuses + report.trades
    report.operations += report.handoffs + report.takeovers
    return report


def handoff_latencies(events: Sequence[Event]) -> list[float]:
    """Milliseconds from each hop's command to the new server's load of the player."""
    loads: dict[tuple[str, str], list[float]] = defaultdict(list)
    for event in events:
        if event["event"] == "loaded":
            loads[(str(event["key"]), str(event["worker"]))].append(float(event["t"]))
    latencies = []
    for event in events:
        if event["event"] == "hop":
            t = float(event["t"])
            later = [at for at in loads[(str(event["key"]), str(event["server"]))] if at >= t]
            if later:
                latencies.append((min(later) - t) * 1000.0)
    return latencies


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct`` percentile (nearest rank) of ``values``, rounded; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return round(ordered[rank], 1)


def _faults(events: Sequence[Event]) -> int:
    """Faults injected, over every process (a restarted server counts from 0 again)."""
    banked: dict[str, int] = defaultdict(int)
    last: dict[str, int] = defaultdict(int)
    for event in events:
        if event["event"] != "faults":
            continue
        counts = event.get("counts", {})
        total = sum(int(counts.get(kind, 0)) for kind in ("fail", "throttle", "unknown"))
        worker = str(event["worker"])
        if total < last[worker]:
            banked[worker] += last[worker]
        last[worker] = total
    return sum(banked.values()) + sum(last.values())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
