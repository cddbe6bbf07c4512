"""Offline migration: bring every unlocked record of a spec up to its version.

Each record is migrated by one conditional update, the same transform code a loading
server runs, so a server that locks a record meanwhile simply wins: the update sees its
lock and leaves the record to it. Locked records are skipped and reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sessionlocker.core import transforms as tx
from sessionlocker.core.protocol import Transform
from sessionlocker.core.spec import Spec
from sessionlocker.errors import StoreError
from sessionlocker.stores.base import Store

__all__ = ["MigrationReport", "migrate_records"]

#: How many records of each problem the report lists by name (all are counted).
LISTED = 5


@dataclass
class MigrationReport:
    """What ``migrate_records`` found, by outcome."""

    total: int = 0
    migrated: int = 0
    current: int = 0
    locked: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when no record failed (locked ones are left for their holders)."""
        return not self.failed

    def note(self, key: str, outcome: str, detail: str) -> None:
        """Keep the first ``LISTED`` records of each problem by name."""
        if sum(1 for _, seen, _ in self.problems if seen == outcome) < LISTED:
            self.problems.append((key, outcome, detail))


def migrate_records(
    store: Store,
    spec: Spec,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Migrate every unlocked record of ``spec``; with ``dry_run`` write nothing.

    ``progress(done, total)`` is called after each record.
    """
    keys = sorted(store.keys(f"{spec.namespace}/"))
    report = MigrationReport(total=len(keys), dry_run=dry_run)
    transform = tx.upgrade_unlocked(spec.upgrade)
    for done, key in enumerate(keys, 1):
        _one(store, key, transform, report)
        if progress is not None:
            progress(done, len(keys))
    return report


def _one(
    store: Store, key: str, transform: Transform[tx.UpgradeOutcome], report: MigrationReport
) -> None:
    try:
        if report.dry_run:
            decision = transform(store.read(key))
            outcome = decision.outcome
        else:
            outcome = store.update(key, transform).outcome
    except StoreError as exc:
        report.failed["store_error"] += 1
        report.note(key, "store_error", str(exc))
        return
    if isinstance(outcome, tx.Upgraded):
        report.migrated += 1
    elif isinstance(outcome, tx.Current):
        report.current += 1
    elif isinstance(outcome, tx.Locked):
        report.locked += 1
        report.note(key, "locked", f"held by session {outcome.lock.session}")
    else:
        report.failed[outcome.reason] += 1
        report.note(key, outcome.reason, str(outcome.error))
