"""``sessionlocker simulate``: two worker processes, one SIGKILL, and a check of the store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sessionlocker.sim.demo import Options, SimulationError, simulate
from sessionlocker.sim.world import Timings

__all__ = ["register", "run"]

DESCRIPTION = """\
Run two worker processes on one SQLite database. They keep taking the same player
records from each other (load mode "force"), increment a counter in each, and note every
change that was confirmed saved. Halfway through, one worker is killed with SIGKILL
while it holds locks; the other takes them over once the dead worker's lease expires
(lease {lease:g} s, autosave {autosave:g} s) and carries on.

At the end the records are read straight from the database and checked: every
confirmed change is there, each record is consistent, no lock is left held, and every
lock of the killed worker was taken over, none while the store still judged its lease
alive.

Exit status: 0 when every check passed, 1 when one failed (or the run could not be
done), 2 for a bad command line."""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand."""
    timings = Timings()
    parser = subcommands.add_parser(
        "simulate",
        help="hand records between two processes, kill one, check nothing was lost",
        description=DESCRIPTION.format(lease=timings.lease, autosave=timings.autosave),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=_directory,
        metavar="DIR",
        help="keep the database and the workers' logs in a new folder inside DIR "
        "(default: a temporary folder, removed at the end)",
    )
    parser.add_argument(
        "--players",
        type=_players,
        default=4,
        metavar="N",
        help="how many player records the workers share (default: 4)",
    )
    parser.add_argument(
        "--duration",
        type=_duration,
        default=6.0,
        metavar="SECONDS",
        help="how long the workers run; the kill comes halfway (default: 6)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed of the random choices (default: a new one, shown in the report)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print its report; 0 when no check failed."""
    options = Options(
        players=args.players, duration=args.duration, seed=args.seed, directory=args.dir
    )
    try:
        report = simulate(options)
    except SimulationError as exc:
        print(f"sessionlocker simulate: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text())
    return 0 if report.ok else 1


def _directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing directory")
    return path


def _players(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, not {number}")
    return number


def _duration(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 1.0 <= seconds <= 3600.0:
        raise argparse.ArgumentTypeError(f"must be between 1 and 3600 seconds, not {text}")
    return seconds
