"""The invariants checked on the final store contents after a simulation.

- Every confirmed increment ``(worker, n)`` of a key is in its final record, at
  ``log[n - 1]``, so no acknowledged save was lost or overwritten.
- Every record's data is consistent: ``count == len(log)`` and ``log[i]`` counts ``i + 1``.
- No lock is left at the end: the killed worker's locks were taken over, and the
  surviving worker released everything when it stopped.
- Every key the killed worker held was taken over, and none while the store still
  judged the dead worker's lease alive (a lease must not be cut short).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sessionlocker.core.record import Record
from sessionlocker.sim.history import Confirmed

__all__ = ["Findings", "check_confirmed", "check_locks", "check_records", "check_takeovers"]


@dataclass
class Findings:
    """How many checks ran and what they found wrong."""

    checks: int = 0
    violations: list[str] = field(default_factory=list)

    def expect(self, ok: bool, problem: str) -> None:
        """Count one check; note ``problem`` when it failed."""
        self.checks += 1
        if not ok:
            self.violations.append(problem)


def check_confirmed(
    findings: Findings, records: Mapping[str, Record | None], confirmed: Iterable[Confirmed]
) -> None:
    """Every confirmed increment must be in the final record of its key."""
    for change in confirmed:
        record = records.get(change.key)
        log = _log(record)
        found = log[change.n - 1] if 0 < change.n <= len(log) else None
        findings.expect(
            found == [change.worker, change.n],
            f"{change.key}: confirmed change {change.n} by {change.worker} is missing "
            f"(final log has {found!r} there, count {_count(record)})",
        )


def check_records(findings: Findings, records: Mapping[str, Record | None]) -> None:
    """Each record's count must match its log, entry by entry."""
    for key, record in records.items():
        if record is None:
            continue
        log = _log(record)
        numbers = [
            entry[1] if isinstance(entry, list) and len(entry) == 2 else None for entry in log
        ]
        findings.expect(
            _count(record) == len(log) and numbers == list(range(1, len(log) + 1)),
            f"{key}: count {_count(record)} does not match its log of {len(log)} entries",
        )


def check_locks(
    findings: Findings, records: Mapping[str, Record | None], names: Mapping[str, str]
) -> None:
    """No record may be left locked; ``names`` maps session ids to worker names."""
    for key, record in records.items():
        lock = None if record is None else record.lock
        holder = None if lock is None else names.get(lock.session, lock.session)
        findings.expect(lock is None, f"{key}: still locked at the end by {holder}")


def check_takeovers(
    findings: Findings, held: Iterable[str], takeovers: Mapping[str, float], alive_for: float
) -> None:
    """Every key the killed worker held was taken over, and not while its lease lived.

    ``takeovers`` and ``alive_for`` are seconds after the kill: when each key was taken,
    and the last time the store still judged the dead worker's lease alive.
    """
    for key in held:
        seconds = takeovers.get(key)
        findings.expect(seconds is not None, f"{key}: the killed worker's lock was never taken")
        if seconds is not None:
            findings.expect(
                seconds >= alive_for,
                f"{key}: taken over {seconds:.2f} s after the kill, while the store still "
                f"judged the killed worker's lease alive ({alive_for:.2f} s after the kill)",
            )


def _data(record: Record | None) -> dict[str, Any]:
    data = None if record is None else record.data
    return data if isinstance(data, dict) else {}


def _log(record: Record | None) -> list[Any]:
    log = _data(record).get("log")
    return log if isinstance(log, list) else []


def _count(record: Record | None) -> object:
    return _data(record).get("count")
