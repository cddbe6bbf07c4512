"""``sessionlocker bench``: measure a store and print the figures (or JSON)."""

from __future__ import annotations

import argparse
import json
import sys

from sessionlocker.benchmarks import FULL, PARTS, QUICK, TINY, errors, markdown, run
from sessionlocker.benchmarks.common import quiet_library_logs
from sessionlocker.cli.options import complain
from sessionlocker.errors import UsageError
from sessionlocker.stores.opening import parse_store_url

__all__ = ["register", "run_command"]

DESCRIPTION = """\
Measure what session locking costs on a store, and how fast records change hands:

  save        saves per second of one loaded locker, against the raw backend doing the
              same conditional write with the same client library and one connection
  round_trips store requests per load, save, release, force handoff, remote change
  handoff     force handoff latency from a holder in another process (polling only,
              and with notifications where the store and the driver have them)
  takeover    time to take over a record after its holder is killed (SIGKILL)
  frame       LockerService.update() with 1,000 to 100,000 idle lockers
  memory      memory per loaded locker beyond its data

Benchmark records are written under the namespace "bench" with random keys and
deleted afterwards. A full run takes several minutes per store. ProfileService
and ProfileStore beside ours are measured by bench/run.py in the repository only.

Exit status: 0 when every part ran, 1 when a part failed (its error is in the
output), 2 for a bad command line."""

_SIZES = {"full": FULL, "quick": QUICK, "tiny": TINY}


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand."""
    parser = subcommands.add_parser(
        "bench",
        help="measure a store: throughput, round trips, handoff, takeover, frame, memory",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--store",
        action="append",
        required=True,
        type=_url,
        metavar="URL",
        help="a store URL, e.g. sqlite:///bench.db or redis://localhost:6379/0 "
        "(give --store again for several stores)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--size",
        choices=tuple(_SIZES),
        default="full",
        help="how much to measure: full (published figures), quick, tiny (default: full)",
    )
    parser.add_argument(
        "--only",
        type=_parts,
        default=PARTS,
        metavar="PART,...",
        help=f"run only these parts, of: {', '.join(PARTS)}",
    )
    parser.set_defaults(run=run_command, parser=parser)


def run_command(args: argparse.Namespace) -> int:
    """Run the benchmarks and print the results; 0 when no part failed."""
    quiet_library_logs()
    results = run(
        args.store,
        _SIZES[args.size],
        parts=args.only,
        progress=lambda text: print(f"bench: {text}", file=sys.stderr, flush=True),
        reproduce="sessionlocker bench " + " ".join(f"--store {url}" for url in args.store),
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(markdown(results))
    failed = errors(results)
    for problem in failed:
        complain("bench", f"failed: {problem}")
    return 1 if failed else 0


def _url(text: str) -> str:
    try:
        parse_store_url(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _parts(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [part for part in chosen if part not in PARTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {', '.join(unknown) or '(none given)'}; parts are {', '.join(PARTS)}"
        )
    return chosen
