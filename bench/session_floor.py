"""The floor of ``session()`` per cycle on Redis: only its two store calls.

A ``session()`` of a record this service wrote last is two conditional writes (the
grant, then the final save with the release). This times those two writes alone, with
the store's own client and no locker around them, beside the redis-py peer of
``peers.py`` (``Lock`` + GET/SET) in the same process, alternating rounds (median):
how fast ``session()`` could be if the locker's Python cost nothing.

    .venv/bin/python bench/session_floor.py redis://127.0.0.1:6379/0 [cycles]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable

import redis

from sessionlocker.benchmarks.common import make_data
from sessionlocker.stores import open_store


def main(url: str, cycles: int = 2000) -> dict[str, float]:
    store = open_store(url)
    template = json.dumps(make_data(1000))
    value = template.encode()
    key = f"sessionlocker-bench-floor:{uuid.uuid4().hex[:8]}"
    revision = store.write(key, value, None)

    def ours() -> None:
        nonlocal revision
        revision = store.write(key, value, revision)  # the grant
        revision = store.write(key, value, revision)  # the final save and release

    client = redis.Redis.from_url(url)
    peer_key = f"sessionlocker-bench-floor-peer:{uuid.uuid4().hex[:8]}"
    client.set(peer_key, template)

    def peer() -> None:
        with client.lock(f"{peer_key}:lock", timeout=10, blocking_timeout=10):
            data = json.loads(client.get(peer_key) or b"{}")
            data["coins"] += 1
            client.set(peer_key, json.dumps(data, separators=(",", ":")))

    def rate(cycle: Callable[[], None]) -> float:
        start = time.perf_counter()
        for _ in range(cycles):
            cycle()
        return cycles / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {"two writes alone": [], "redis-py Lock + GET/SET": []}
    try:
        for _ in range(3):
            rates["two writes alone"].append(rate(ours))
            rates["redis-py Lock + GET/SET"].append(rate(peer))
    finally:
        store.delete(key)
        client.delete(peer_key)
        client.close()
        store.close()
    return {way: round(statistics.median(found)) for way, found in rates.items()}


if __name__ == "__main__":
    print(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
