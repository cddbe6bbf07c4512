"""Redis Cluster against one Redis node: saves per second and the pause of a failover.

    .venv/bin/python bench/cluster.py                # prints the figures as JSON
    .venv/bin/python bench/cluster.py --seconds 5    # longer save rounds
    .venv/bin/python bench/run.py --cluster          # the same, into results.json and README

Starts a throwaway 6-node cluster (``sessionlocker.sim.local``: 3 primaries, 3 replicas)
and one ``redis-server`` (``servers.py``), both with ``appendfsync always``, then:

- ``saves_per_s``: confirmed saves per second of one process with 1,000 lockers, and of
  3 processes with 1,000 lockers each (summed), on the cluster and on the single node.
  Each locker saves again as soon as its last save is confirmed (``when_saved`` True).
- ``failover``: one process saves a key on a primary in a loop; the primary is SIGKILLed;
  the seconds from the kill to the first save that succeeds again, and until the cluster
  says it is healthy.

- ``cluster_replicas_1``: the saves per second on the cluster with ``replicas=1`` (each
  record write waits until the replica of its slot's primary has it).
- ``replicas_pause``: for a cluster with 1, then 2 replicas per primary, one thread
  saves a key through ``?replicas=1&replica_timeout=1`` in a loop; its primary is
  SIGKILLed; once a replica is promoted the killed node is started again (it rejoins as
  a replica); the seconds from the kill to the promotion (cluster healthy), to the
  rejoined node being in sync, and to the first save acknowledged again.

    .venv/bin/python bench/cluster.py --pause-only --runs 3   # only ``replicas_pause``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from servers import RedisServer
from sessionlocker import LockerService, Spec
from sessionlocker.benchmarks.common import quiet_library_logs
from sessionlocker.errors import Conflict, StoreError
from sessionlocker.sim.local.redis_cluster import RedisClusterTopology
from sessionlocker.stores import open_store

HERE = Path(__file__).resolve().parent
LOCKERS = 1000


def saves_per_second(url: str, lockers: int, seconds: float, tag: str) -> float:
    """Confirmed saves per second of one service with ``lockers`` lockers, each saving
    again as soon as its last save was confirmed."""
    spec = Spec("bench", dict, autosave_period=3600.0, lease=30.0, poll_period=5.0)
    service = LockerService(url, spec, workers=8)
    confirmed = 0
    counting = False
    try:
        held = [service.locker(f"{tag}-{number}") for number in range(lockers)]
        for locker in held:
            locker.acquire()
        service.run_until(lambda: all(locker.is_available() for locker in held), timeout=120)

        def again(locker: Any) -> None:
            change = locker.edit(lambda data: data.__setitem__("n", data.get("n", 0) + 1))

            def saved(ok: bool) -> None:
                nonlocal confirmed
                if ok and counting:
                    confirmed += 1
                if counting:
                    again(locker)

            locker.when_saved(change, saved)
            locker.force_save()

        counting = True
        began = time.monotonic()
        for locker in held:
            again(locker)
        service.run_until(lambda: time.monotonic() - began >= seconds, timeout=seconds + 5)
        counting = False
        return confirmed / (time.monotonic() - began)
    finally:
        service.close(timeout=30.0)


def processes_saves(url: str, processes: int, seconds: float) -> float:
    """The summed saves per second of ``processes`` child processes (this script)."""
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", url, "--seconds", str(seconds), "--tag", f"p{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    return sum(float(child.communicate(timeout=600)[0].strip() or 0) for child in children)


def failover_pause(topology: RedisClusterTopology) -> dict[str, float]:
    """Seconds from a primary's SIGKILL to the first successful save of a key it owned,
    and to the cluster being healthy again."""
    store = open_store(topology.url + "?timeout=1")
    try:
        client = store.connect()  # type: ignore[attr-defined]
        name = store._layout.name(b"r:", "failover")  # type: ignore[attr-defined]
        port = int(client.get_node_from_key(name).port)
        client.close()
        revision = store.write("failover", b"0", None)
        killed = time.monotonic()
        topology.fail_primary(port)
        saved_after = None
        while saved_after is None:
            try:
                revision = store.write("failover", b"1", revision)
                saved_after = time.monotonic() - killed
            except StoreError:
                time.sleep(0.05)
                current = _revision(store)
                if current is not None and current != revision:
                    revision = current
        topology.wait_healthy()
        return {
            "first_save_s": round(saved_after, 2),
            "cluster_healthy_s": round(time.monotonic() - killed, 2),
        }
    finally:
        store.close()


def replicas_pause(replicas: int, restart_after: float | None = 0.0) -> dict[str, float]:
    """With ``replicas`` replicas per primary and ``replicas=1``: seconds from a primary's
    SIGKILL to the promotion, to the killed node back in sync, to the first save of a
    key it owned that the library acknowledged again. The killed node is started again
    ``restart_after`` seconds after the promotion (``None``: never; then a first save
    not acknowledged within 30 s is ``nan``)."""
    with (
        tempfile.TemporaryDirectory(prefix="sessionlocker-bench-pause-") as folder,
        RedisClusterTopology(Path(folder) / "cluster", replicas=replicas) as topology,
    ):
        store = open_store(topology.url + "?timeout=2&replicas=1&replica_timeout=1")
        client = store.connect()  # type: ignore[attr-defined]
        name = store._layout.name(b"r:", "failover")  # type: ignore[attr-defined]
        port = int(client.get_node_from_key(name).port)
        client.close()
        revision: int | None = store.write("failover", b"0", None)
        acknowledged: list[float] = []
        stop = threading.Event()

        def writer() -> None:
            nonlocal revision
            count = 0
            while not stop.is_set():
                count += 1
                try:
                    revision = store.write("failover", b"%d" % count, revision)
                    acknowledged.append(time.monotonic())
                except Conflict as conflict:  # an unknown outcome that had committed
                    revision = None if conflict.current is None else conflict.current.revision
                except StoreError:  # a refusal, an unknown outcome
                    time.sleep(0.05)
                    revision = _revision(store) or revision

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            time.sleep(1.0)
            topology.fail_primary(port)  # returns once the process is gone
            killed = time.monotonic()
            topology.wait_healthy()
            promoted = time.monotonic()
            rejoined = float("nan")
            if restart_after is not None:
                time.sleep(restart_after)
                topology.restart(port)  # returns once the node is a replica, in sync
                rejoined = time.monotonic()
            deadline = time.monotonic() + (60 if restart_after is not None else 30)
            while not [t for t in acknowledged if t > killed] and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
            store.close()
        after = [t for t in acknowledged if t > killed]
        return {
            "promoted_s": round(promoted - killed, 2),
            "rejoined_s": round(rejoined - killed, 2),
            "first_ack_s": round(after[0] - killed, 2) if after else float("nan"),
        }


def _revision(store: Any) -> int | None:
    try:
        stored = store.read("failover")
    except StoreError:
        return None
    return None if stored is None else int(stored.revision)


def measure(seconds: float) -> dict[str, Any]:
    """Every figure, on a cluster and a single node started for the run."""
    results: dict[str, Any] = {"lockers_per_process": LOCKERS, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="sessionlocker-bench-cluster-") as folder:
        single = RedisServer()
        try:
            with RedisClusterTopology(Path(folder) / "cluster") as cluster:
                for name, url in (("cluster", cluster.url), ("single", single.url)):
                    results[name] = {
                        "1_process_saves_per_s": round(
                            saves_per_second(url, LOCKERS, seconds, f"{name}-one"), 1
                        ),
                        "3_processes_saves_per_s": round(processes_saves(url, 3, seconds), 1),
                    }
                waited = cluster.url + "?replicas=1"
                results["cluster_replicas_1"] = {
                    "1_process_saves_per_s": round(
                        saves_per_second(waited, LOCKERS, seconds, "waited-one"), 1
                    ),
                    "3_processes_saves_per_s": round(processes_saves(waited, 3, seconds), 1),
                }
                results["failover"] = failover_pause(cluster)
        finally:
            single.stop()
    results["replicas_pause"] = {str(n): replicas_pause(n) for n in (1, 2)}
    return results


def table(results: dict[str, Any]) -> str:
    """The README table of ``measure``'s results."""
    lockers = results["lockers_per_process"]
    rows = [
        f"Saves confirmed per second, {lockers:,} lockers per process, each saving again as "
        f"soon as its last save was confirmed ({results['seconds']:g} s rounds; "
        "`bench/run.py --cluster`):",
        "",
        "| store | 1 process | 3 processes |",
        "|---|---|---|",
    ]
    shown_as = (
        ("single", "one Redis node"),
        ("cluster", "Redis Cluster, 3 shards"),
        ("cluster_replicas_1", "Redis Cluster, 3 shards, `replicas=1`"),
    )
    for name, shown in shown_as:
        figures = results[name]
        rows.append(
            f"| {shown} | {figures['1_process_saves_per_s']:,.0f}/s "
            f"| {figures['3_processes_saves_per_s']:,.0f}/s |"
        )
    failover = results["failover"]
    pause = results["replicas_pause"]
    rows += [
        "",
        f"A primary SIGKILLed: the first save of a key it owned succeeded "
        f"{failover['first_save_s']:g} s later (cluster healthy after "
        f"{failover['cluster_healthy_s']:g} s; `cluster-node-timeout` 2 s). With "
        "`replicas=1&replica_timeout=1`, the killed node started again as soon as a replica "
        "was promoted, the first save acknowledged again came "
        f"{pause['1']['first_ack_s']:g} s after the kill with 1 replica per primary "
        f"(promoted {pause['1']['promoted_s']:g} s, killed node back in sync "
        f"{pause['1']['rejoined_s']:g} s) and {pause['2']['first_ack_s']:g} s with 2 "
        f"(promoted {pause['2']['promoted_s']:g} s). All 6 cluster nodes, "
        "the single node and the benchmark share this machine's cores, so the cluster "
        "cannot show its scaling here: the figures compare the client-side cost and "
        "vary by tens of percent from run to run.",
        "",
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="child", help=argparse.SUPPRESS)
    parser.add_argument("--pause-only", action="store_true", help="only replicas_pause")
    parser.add_argument("--runs", type=int, default=1, help="replicas_pause runs")
    parser.add_argument(
        "--restart-after", type=float, default=0.0, help="seconds; negative: never restart"
    )
    args = parser.parse_args()
    quiet_library_logs()
    if args.child:
        print(saves_per_second(args.child, LOCKERS, args.seconds, args.tag))
        return 0
    if args.pause_only:
        print("replicas/primary  promoted(s)  rejoined(s)  first ack(s)")
        for replicas in (1, 2):
            for _ in range(args.runs):
                after = None if args.restart_after < 0 else args.restart_after
                got = replicas_pause(replicas, after)
                print(
                    f"{replicas:16d}  {got['promoted_s']:11.2f}  {got['rejoined_s']:11.2f}  "
                    f"{got['first_ack_s']:12.2f}",
                    flush=True,
                )
        return 0
    began = time.monotonic()
    results = measure(args.seconds)
    results["took_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
