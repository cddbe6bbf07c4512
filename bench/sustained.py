"""Sustained saves: one process, ``lockers`` loaded records all changed at once.

``sustained(url, lockers)`` loads ``lockers`` records of 1 KB in one ``LockerService``
(the default thread pool), then changes every one in the same moment and drives frames
until each change is confirmed saved: saves per second, CPU µs per save of this process
(``time.process_time``: every thread) and the p99 latency of a save inside the burst.
In the same run, the same number of hand-written conditional writes with the same
client, one after the other (raw sequential) and all in one pipeline (raw pipelined):
redis-py ``EVALSHA`` of a Lua compare-and-set (``pipeline(transaction=False)``), psycopg
``UPDATE … WHERE key = %s AND revision = %s`` in autocommit (``conn.pipeline()``).

What the raw PostgreSQL writes commit: sequential, one commit (one WAL flush) per
write; pipelined as psycopg sends it (no sync until the block ends), one implicit
transaction, so one commit for the lot, and a write that fails rolls back every other
(ours give each write its own outcome: see ``docs/backends.md``, "Pipelined frames").

    .venv/bin/python bench/sustained.py redis://127.0.0.1:6379/0 postgresql://... [--lockers N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from sessionlocker import LockerService, Spec
from sessionlocker.core.locker import Locker
from sessionlocker.core.states import Status

_REDIS_CAS = """
local current = redis.call('HGET', KEYS[1], 'revision')
if current ~= ARGV[1] then return -1 end
local revision = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'revision', revision, 'value', ARGV[2])
return revision
"""

SIZE = 1024


def _spec(namespace: str) -> Spec:
    return Spec(namespace, dict)


def sustained(url: str, lockers: int = 1000, rounds: int = 3) -> dict[str, Any]:
    """Saves/s, CPU µs per save and p99 save latency of ``lockers`` changed at once
    (the best of ``rounds`` bursts), beside raw sequential and raw pipelined writes."""
    ours = _ours(url, lockers, rounds)
    raw = _raw(url, lockers, rounds)
    ratios = {
        "vs_raw_sequential": round(ours["saves_per_s"] / raw["sequential_per_s"], 2),
        "vs_raw_pipelined": round(ours["saves_per_s"] / raw["pipelined_per_s"], 2),
    }
    return {"url": url.split("?", maxsplit=1)[0], "lockers": lockers, **ours, **raw, **ratios}


def _ours(url: str, lockers: int, rounds: int) -> dict[str, Any]:
    spec = _spec(f"bench{uuid.uuid4().hex[:8]}")
    best: dict[str, Any] = {}
    with LockerService(url, spec) as service:
        held = [_acquired(service, f"p{i}") for i in range(lockers)]
        service.run_until(lambda: all(lk.status is not Status.LOADING for lk in held), 120)
        if not all(locker.status is Status.LOADED for locker in held):
            raise RuntimeError("not every locker loaded")
        for burst in range(rounds):
            figures = _burst(service, held, burst)
            if not best or figures["saves_per_s"] > best["saves_per_s"]:
                best = figures
        for locker in held:
            locker.release()
        service.run_until(service.drained, 120)
    return best


def _acquired(service: LockerService, key: str) -> Locker:
    locker = service.locker(key)
    locker.acquire()
    return locker


def _burst(service: LockerService, held: list[Locker], burst: int) -> dict[str, Any]:
    blob = f"{burst}".ljust(SIZE - 40, "x")
    latencies: list[float] = []
    clock = time.perf_counter
    cpu, started = time.process_time(), clock()
    for locker in held:
        locker.data["blob"] = blob
        change = locker.mark_changed()
        locker.when_saved(change, _timer(latencies, started, clock))
        locker.force_save()
    service.run_until(lambda: len(latencies) == len(held), 300)
    seconds, used = clock() - started, time.process_time() - cpu
    if len(latencies) != len(held):
        raise RuntimeError("not every save was confirmed")
    latencies.sort()
    return {
        "saves_per_s": round(len(held) / seconds),
        "cpu_us_per_save": round(used / len(held) * 1e6),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }


def _timer(
    latencies: list[float], started: float, clock: Callable[[], float]
) -> Callable[[bool], None]:
    def saved(ok: bool) -> None:
        if not ok:
            raise RuntimeError("a save failed")
        latencies.append(clock() - started)

    return saved


def _raw(url: str, lockers: int, rounds: int) -> dict[str, Any]:
    if url.startswith("redis"):
        return _raw_redis(url.split("?", maxsplit=1)[0], lockers, rounds)
    return _raw_postgresql(url.split("?", maxsplit=1)[0], lockers, rounds)


def _raw_redis(url: str, lockers: int, rounds: int) -> dict[str, Any]:
    import redis  # noqa: PLC0415 (only a Redis run needs it)

    client: Any = redis.Redis.from_url(url)
    prefix = f"sessionlocker-bench-sustained:{os.getpid()}:{uuid.uuid4().hex[:8]}:"
    keys = [f"{prefix}{i}" for i in range(lockers)]
    for key in keys:
        client.hset(key, mapping={"revision": 1, "value": b"x"})
    script = client.register_script(_REDIS_CAS)
    known = dict.fromkeys(keys, 1)
    value = b"v" * SIZE

    def sequential() -> None:
        for key in keys:
            known[key] = int(script(keys=[key], args=[known[key], value]))

    def pipelined() -> None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            script(keys=[key], args=[known[key], value], client=pipe)
        for key, revision in zip(keys, pipe.execute(), strict=True):
            known[key] = int(revision)

    try:
        return _raw_figures(lockers, rounds, sequential, pipelined)
    finally:
        client.delete(*keys)
        client.close()


def _raw_postgresql(url: str, lockers: int, rounds: int) -> dict[str, Any]:
    import psycopg  # noqa: PLC0415 (only a PostgreSQL run needs it)

    connection: Any = psycopg.connect(url, autocommit=True)
    table = f"sessionlocker_bench_sustained_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    connection.execute(
        f"CREATE TABLE {table} (key text PRIMARY KEY, revision bigint NOT NULL, value bytea)"
    )
    keys = [f"p{i}" for i in range(lockers)]
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} VALUES (%s, 1, 'x')", [(k,) for k in keys])
    known = dict.fromkeys(keys, 1)
    value = b"v" * SIZE
    update = (
        f"UPDATE {table} SET value = %s, revision = revision + 1 WHERE key = %s AND revision = %s"
    )

    def sequential() -> None:
        for key in keys:
            if connection.execute(update, (value, key, known[key])).rowcount != 1:
                raise RuntimeError("raw record changed under the benchmark")
            known[key] += 1

    def pipelined() -> None:
        with connection.pipeline():
            cursors = [connection.execute(update, (value, key, known[key])) for key in keys]
        for key, cursor in zip(keys, cursors, strict=True):
            if cursor.rowcount != 1:
                raise RuntimeError("raw record changed under the benchmark")
            known[key] += 1

    try:
        return _raw_figures(lockers, rounds, sequential, pipelined)
    finally:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.close()


def _raw_figures(
    lockers: int, rounds: int, sequential: Callable[[], None], pipelined: Callable[[], None]
) -> dict[str, Any]:
    return {
        "sequential_per_s": round(lockers / _best(sequential, rounds)),
        "pipelined_per_s": round(lockers / _best(pipelined, rounds)),
    }


def _best(run: Callable[[], None], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--lockers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for url in args.urls:
        print(json.dumps(sustained(url, args.lockers, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
