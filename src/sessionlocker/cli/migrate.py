"""``sessionlocker migrate``: migrate every unlocked record of a spec, offline."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from sessionlocker.cli.display import Progress
from sessionlocker.cli.options import add_store
from sessionlocker.core.spec import Spec
from sessionlocker.drivers.offline import MigrationReport, migrate_records
from sessionlocker.errors import SessionLockerError
from sessionlocker.stores import open_store

__all__ = ["load_spec", "register"]

DESCRIPTION = """\
Walk every record of a spec's namespace and migrate the ones no server holds, with the
same migrators a server runs at load. Locked records are skipped and listed (their
holder migrates them at its next load); records from a newer version, corrupt ones and
failing migrations are counted by reason and left untouched.

Exit status: 0 when no record failed, 1 otherwise, 2 for a bad command line."""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``migrate`` subcommand."""
    parser = subcommands.add_parser(
        "migrate",
        help="migrate every unlocked record of a spec to its version",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store(parser)
    parser.add_argument(
        "--spec",
        required=True,
        metavar="MODULE:NAME",
        help="the Spec to migrate to, as an importable module and attribute (game.data:PLAYERS)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would change; write nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(run=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Migrate, printing progress to stderr and the summary to stdout."""
    try:
        spec = load_spec(args.spec)
        store = open_store(args.store)
    except SessionLockerError as exc:
        args.parser.error(str(exc))
    started = time.monotonic()
    try:
        with Progress("migrate") as progress:
            report = migrate_records(store, spec, dry_run=args.dry_run, progress=progress)
    finally:
        store.close()
    elapsed = time.monotonic() - started
    print(as_json(report, elapsed) if args.json else as_text(report, spec, elapsed))
    return 0 if report.ok else 1


def load_spec(target: str) -> Spec:
    """The ``Spec`` named ``module:attribute`` (the current folder is importable)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SessionLockerError(f"--spec takes MODULE:NAME, not {target!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SessionLockerError(f"cannot import {module_name!r}: {exc}") from exc
    spec = getattr(module, attribute, None)
    if not isinstance(spec, Spec):
        raise SessionLockerError(f"{target} is {type(spec).__name__}, not a sessionlocker Spec")
    return spec


def as_text(report: MigrationReport, spec: Spec, elapsed: float) -> str:
    """The human summary."""
    mode = " (dry run: nothing written)" if report.dry_run else ""
    verb = "would migrate" if report.dry_run else "migrated"
    lines = [
        f"{spec.namespace}: {report.total:,} records, to version {spec.version}{mode}",
        f"  {verb:<16}{report.migrated:>8,}",
        f"  {'already current':<16}{report.current:>8,}",
        f"  {'locked, skipped':<16}{report.locked:>8,}",
        f"  {'failed':<16}{sum(report.failed.values()):>8,}"
        + "".join(f"  {reason}: {n:,}" for reason, n in sorted(report.failed.items())),
        f"  in {elapsed:.1f} s",
    ]
    if report.problems:
        lines.append("records left as they were (the first of each kind):")
        lines.extend(f"  {key}: {outcome}: {detail}" for key, outcome, detail in report.problems)
    return "\n".join(lines)


def as_json(report: MigrationReport, elapsed: float) -> str:
    """The machine-readable summary."""
    return json.dumps(
        {
            "total": report.total,
            "migrated": report.migrated,
            "current": report.current,
            "locked": report.locked,
            "failed": dict(report.failed),
            "problems": [{"key": k, "outcome": o, "detail": d} for k, o, d in report.problems],
            "dry_run": report.dry_run,
            "seconds": round(elapsed, 3),
        }
    )
