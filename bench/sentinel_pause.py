"""The pause of acknowledged saves when the primary behind Sentinel dies, with ``replicas=1``.

For each topology (a primary with one replica, then with two) this starts the servers
(``sessionlocker.sim.local.redis_sentinel``), writes one record in a loop through the
library (``redis+sentinel://...?replicas=1``), SIGKILLs the primary, waits for the
sentinels to promote a replica, starts the killed node again (the sentinels make it a
replica), and prints the time from the kill to the promotion, to the first write the
library acknowledged again, and how long the restarted node claimed to be a primary.

    .venv/bin/python bench/sentinel_pause.py [--replicas 1 2] [--timeout 1]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from sessionlocker.errors import Conflict, StoreError
from sessionlocker.sim.local.redis_sentinel import RedisSentinelTopology, role
from sessionlocker.stores import open_store


def measure(replicas: int, replica_timeout: float) -> dict[str, float]:
    """One failover on a topology with ``replicas`` replicas; seconds after the kill."""
    with tempfile.TemporaryDirectory() as folder:
        topology = RedisSentinelTopology(Path(folder), replicas=replicas)
        with topology:
            url = f"{topology.base_url}?replicas=1&replica_timeout={replica_timeout:g}"
            store = open_store(url)
            revision = store.write("pause", b"0", None)
            acknowledged: list[float] = []
            stop = threading.Event()

            def writer() -> None:
                nonlocal revision
                count = 0
                while not stop.is_set():
                    count += 1
                    try:
                        revision = store.write("pause", str(count).encode(), revision)
                        acknowledged.append(time.monotonic())
                    except Conflict as conflict:  # an unknown outcome that had committed
                        revision = None if conflict.current is None else conflict.current.revision
                    except StoreError:
                        try:  # settle: what does the primary the sentinels name hold?
                            current = store.read("pause")
                            revision = None if current is None else current.revision
                        except StoreError:
                            time.sleep(0.05)

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(1.0)
            victim = topology.kill_primary()  # returns once the process is gone
            killed = time.monotonic()
            topology.wait_promoted(victim.port)
            promoted = time.monotonic()
            victim.start()
            restarted = time.monotonic()
            while role(victim.port) == "master":
                time.sleep(0.02)
            demoted = time.monotonic()
            deadline = time.monotonic() + 60
            while not [t for t in acknowledged if t > killed] and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            thread.join()
            store.close()
            after = [t for t in acknowledged if t > killed]
            return {
                "promoted": promoted - killed,
                "first_ack": (after[0] - killed) if after else float("nan"),
                "old_primary_claimed": demoted - restarted,
                "restarted": restarted - killed,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timeout", type=float, default=1.0, help="replica_timeout (s)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print("replicas/primary  promoted(s)  first ack(s)  restarted(s)  old primary claimed(s)")
    for replicas in args.replicas:
        for _ in range(args.runs):
            got = measure(replicas, args.timeout)
            print(
                f"{replicas:16d}  {got['promoted']:11.2f}  {got['first_ack']:12.2f}  "
                f"{got['restarted']:12.2f}  {got['old_primary_claimed']:22.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
