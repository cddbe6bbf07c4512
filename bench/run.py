"""Run the full benchmark and publish it: ``bench/results.json``, the tables in
``bench/README.md`` and the plots in ``bench/plots/`` (``plots.py``).

    .venv/bin/python bench/run.py                 # memory, SQLite, Redis, PostgreSQL
    .venv/bin/python bench/run.py --size quick    # smaller, for a look
    .venv/bin/python bench/run.py --no-servers    # memory and SQLite only
    .venv/bin/python bench/run.py --cluster       # only Redis Cluster vs one node (``cluster.py``)

SQLite gets a fresh file in a temporary folder. Redis and PostgreSQL get throwaway
servers of their own (``servers.py``: 127.0.0.1, ports 56379 and 55433, temporary
folders), started for the run and stopped after it; a backend whose server cannot be
started is left out and the reason is written into the results. ``--store URL`` runs
against stores you already have instead (then no server is started).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import cluster
from baselines import baselines
from peers import ensure_peers, peers
from plots import write_plots

from servers import PostgresServer, RedisServer, ServerUnavailable
from sessionlocker.benchmarks import FULL, QUICK, TINY, errors, markdown, run
from sessionlocker.benchmarks.common import quiet_library_logs
from sessionlocker.benchmarks.runner import guarded

HERE = Path(__file__).resolve().parent
START = "<!-- results:start (written by bench/run.py) -->"
END = "<!-- results:end -->"
CLUSTER_START = "<!-- cluster:start (written by bench/run.py --cluster) -->"
CLUSTER_END = "<!-- cluster:end -->"
SIZES = {"full": FULL, "quick": QUICK, "tiny": TINY}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--no-servers", action="store_true", help="skip Redis and PostgreSQL")
    parser.add_argument("--store", action="append", metavar="URL", help="measure this store")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="measure only Redis Cluster against one node (cluster.py), into results.json",
    )
    args = parser.parse_args()
    quiet_library_logs()
    if args.cluster:
        return _cluster(args.output, args.readme)
    command = "bench/run.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="sessionlocker-bench-") as folder:
        servers: list[Any] = []
        skipped: dict[str, str] = {}
        urls = args.store or [
            "memory://",
            f"sqlite:///{Path(folder) / 'bench.db'}",
            *([] if args.no_servers else _start_servers(servers, skipped)),
        ]
        try:
            sizes = SIZES[args.size]
            results = run(urls, sizes, progress=_say, reproduce=command.strip())
            _say("baselines (ProfileService and ProfileStore, bench/baselines.py)")
            notified = results["driver_uses_notifications"]
            results["baselines"] = guarded(lambda: baselines(sizes, notifications=notified))
            _say("peers (session() per cycle against other libraries, bench/peers.py)")
            skipped.update({f"peer {name}": why for name, why in ensure_peers().items()})
            results["peers"] = guarded(lambda: peers(urls, sizes))
        finally:
            for server in servers:
                server.stop()
    results["left_out"] = skipped
    if args.output.exists():  # ``--cluster`` figures are measured on their own: keep them
        cluster_figures = json.loads(args.output.read_text()).get("redis_cluster")
        if cluster_figures is not None:
            results["redis_cluster"] = cluster_figures
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    _update_readme(args.readme, markdown(results))
    plots = write_plots(results, args.readme.parent / "plots")
    _say(f"wrote {args.output}, the tables in {args.readme} and {len(plots)} plots")
    failed = errors(results)
    for problem in failed:
        _say(f"failed: {problem}")
    return 1 if failed else 0


def _cluster(output: Path, readme: Path) -> int:
    """Measure the cluster, keep it under ``redis_cluster`` in ``output`` and in the
    README between its own markers; the other results stay as they are."""
    _say("Redis Cluster against one node (about a minute)")
    figures = cluster.measure(seconds=3.0)
    results = json.loads(output.read_text()) if output.exists() else {}
    results["redis_cluster"] = figures
    output.write_text(json.dumps(results, indent=2) + "\n")
    _update_readme(readme, cluster.table(figures), CLUSTER_START, CLUSTER_END)
    _say(f"wrote redis_cluster into {output} and the table into {readme}")
    return 0


def _start_servers(servers: list[Any], skipped: dict[str, str]) -> list[str]:
    urls = []
    for name, make in (("redis", RedisServer), ("postgresql", PostgresServer)):
        try:
            server = make()
        except ServerUnavailable as exc:
            skipped[name] = str(exc)
            _say(f"{name} left out: {exc}")
            continue
        servers.append(server)
        urls.append(server.url)
    return urls


def _update_readme(readme: Path, tables: str, start: str = START, end: str = END) -> None:
    text = readme.read_text()
    before, found_start, rest = text.partition(start)
    _, found_end, after = rest.partition(end)
    if not found_start or not found_end:
        raise SystemExit(f"{readme} has no {start} ... {end} markers to write between")
    readme.write_text(f"{before}{start}\n{tables}{end}{after}")


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
