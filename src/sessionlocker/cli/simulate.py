"""``sessionlocker simulate``: a fleet of server processes, chaos, and an independent check."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from sessionlocker.sim.local import TOPOLOGIES
from sessionlocker.sim.progress import live_progress
from sessionlocker.sim.run import Options, SimulationError, simulate
from sessionlocker.sim.world import Timings

__all__ = ["register", "run"]

DESCRIPTION = """\
Run a fleet of game servers, each its own process, on one store (by default a SQLite
file in a temporary folder). Players join a server, play (their data changes every few
frames), hop to another server (it opens them with "force" while the old one lets go),
leave and come back. Purchases arrive at the buyer's current server and are delivered
again and again (duplicates, and after a crash to another server); some are gifts.
An admin process sends bonuses straight to the store, and players on different
servers trade items. Meanwhile servers are killed with SIGKILL and restarted, frozen
with SIGSTOP for one to three leases (lease {lease:g} s), their store calls fail, are
throttled or lose their replies, and their clocks are skewed.

Every server writes what it observed and acknowledged to its own history file. At the
end a checker that shares nothing with the servers reads the histories and the final
store and counts lost acknowledged saves, double grants, lost grants, split-brain
commits, data regressions, duplicated or lost items and stuck locks.

Exit status: 0 when no violation was found, 1 when one was (or the run could not be
done), 2 for a bad command line."""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand."""
    defaults, timings = Options(), Timings()
    parser = subcommands.add_parser(
        "simulate",
        help="a fleet of server processes with crashes and faults; check nothing was lost",
        description=DESCRIPTION.format(lease=timings.lease),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--store", metavar="URL", help="the store (default: a SQLite file in the run folder)")
    add(
        "--servers",
        type=_number(int, 1, 32),
        default=defaults.servers,
        metavar="N",
        help=f"how many server processes (default: {defaults.servers})",
    )
    add(
        "--players",
        type=_number(int, 1, 1000),
        default=defaults.players,
        metavar="N",
        help=f"how many players (default: {defaults.players})",
    )
    add(
        "--duration",
        type=_number(float, 1.0, 3600.0),
        default=defaults.duration,
        metavar="SECONDS",
        help=f"how long the workload runs (default: {defaults.duration:g})",
    )
    add(
        "--seed",
        type=int,
        metavar="N",
        help="seed of the random choices (default: a new one, shown in the report)",
    )
    add(
        "--crash-rate",
        type=_number(float, 0.0, 10.0),
        default=defaults.crash_rate,
        metavar="R",
        help=f"SIGKILLs (then a restart) per server per second (default: {defaults.crash_rate:g})",
    )
    add(
        "--pause-rate",
        type=_number(float, 0.0, 10.0),
        default=defaults.pause_rate,
        metavar="R",
        help="SIGSTOPs (1-3 leases, then SIGCONT) per server per second "
        f"(default: {defaults.pause_rate:g})",
    )
    add(
        "--fault-rate",
        type=_number(float, 0.0, 0.5),
        default=defaults.fault_rate,
        metavar="R",
        help="share of store calls that fail or lose their reply "
        f"(default: {defaults.fault_rate:g})",
    )
    add(
        "--skew",
        type=_number(float, 0.0, 10.0),
        default=defaults.skew,
        metavar="SECONDS",
        help="largest clock offset between servers; rates differ up to skew/10, at most 5%% "
        f"(default: {defaults.skew:g})",
    )
    add(
        "--start",
        choices=sorted(TOPOLOGIES),
        help="start a throwaway local topology of real servers on loopback (in the run "
        "folder) and run on it instead of --store; stopped at the end",
    )
    add(
        "--failover",
        action="store_true",
        help="with --start: SIGKILL the current primary a third of the way in (the "
        "servers' own failover promotes a replica)",
    )
    add("--json", action="store_true", help="print the report as JSON on stdout")
    add(
        "--out",
        "--dir",
        dest="out",
        type=Path,
        metavar="DIR",
        help="keep the store, histories and report in a new folder inside DIR "
        "(default: a temporary folder, removed at the end unless the run failed: a "
        "failed run keeps it and prints its path)",
    )
    parser.set_defaults(run=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print its report; 0 when no violation was found."""
    if args.failover and args.start is None:
        args.parser.error("--failover kills only servers simulate started itself: add --start")
    if args.start is not None and args.store is not None:
        args.parser.error("give either --store or --start, not both")
    options = Options(
        store=args.store,
        start=args.start,
        failover=args.failover,
        servers=args.servers,
        players=args.players,
        duration=args.duration,
        seed=args.seed,
        crash_rate=args.crash_rate,
        pause_rate=args.pause_rate,
        fault_rate=args.fault_rate,
        skew=args.skew,
        out=args.out,
    )
    try:
        with live_progress(options.duration) as progress:
            report = simulate(options, progress)
    except SimulationError as exc:
        print(f"sessionlocker simulate: error: {exc}", file=sys.stderr)
        return 1
    document = json.dumps(report.as_dict(), indent=2)
    if report.directory is not None:
        (Path(report.directory) / "report.json").write_text(document + "\n", encoding="utf-8")
    print(document if args.json else report.text())
    return 0 if report.ok else 1


def _number(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` between ``low`` and ``high``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, not {text}")
        return value

    return parse
