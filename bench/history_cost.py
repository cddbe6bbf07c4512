"""What kept versions cost a write on a SQL store: history off, trimmed at every write,
trimmed in batches (``sessionlocker.stores._trim``), in alternating rounds.

    .venv/bin/python bench/history_cost.py sqlite:////tmp/history.db 2000 5
    .venv/bin/python bench/history_cost.py postgresql://user@host/db 500 5

Prints the median µs of a 1 KB conditional write to one key, per round and overall.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid

from sessionlocker.benchmarks.common import make_data
from sessionlocker.stores import _trim, open_store

CONFIGS = (("0", 16), ("10", 1), ("10", 16))


def main(url: str, writes: int, rounds: int) -> None:
    value = json.dumps(make_data(1_000)).encode()
    separator = "&" if "?" in url else "?"
    stores = {}
    for history, _ in CONFIGS:
        table = f"&table=history_cost_{history}" if url.startswith("postgres") else ""
        stores.setdefault(history, open_store(f"{url}{separator}history={history}{table}"))
    found: dict[tuple[str, int], list[float]] = {config: [] for config in CONFIGS}
    for _ in range(rounds):
        for history, every in CONFIGS:
            _trim.TRIM_EVERY = every
            store = stores[history]
            key = f"history-cost-{uuid.uuid4().hex[:8]}"
            revision = store.write(key, value, None)
            times = []
            for _ in range(writes):
                start = time.perf_counter()
                revision = store.write(key, value, revision)
                times.append(time.perf_counter() - start)
            found[(history, every)].append(statistics.median(times) * 1e6)
            store.delete(key)
    for (history, every), medians in found.items():
        rounded = [round(m) for m in medians]
        print(
            f"history={history} trimmed by 1 write in {every}: µs {rounded}, "
            f"median {round(statistics.median(medians))}"
        )
    for store in stores.values():
        store.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
