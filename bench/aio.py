"""The asyncio driver (``AsyncLockerService``) on Redis and PostgreSQL, against raw async
clients in the same run.

    .venv/bin/python bench/aio.py redis://127.0.0.1:6379/0 postgresql://...

One 1 KB record, per URL, in alternating rounds (median of rounds):

- ``session()`` per cycle: ``async with service.session(key) as p: p.data["coins"] += 1``;
- long-held: one locker stays loaded; per cycle change, ``force_save``, ``await
  service.wait_until(saved)``; its p50 and p99 save latency;
- the raw peer: on Redis ``redis.asyncio`` ``Lock`` + ``GET``/``SET``; on PostgreSQL a
  psycopg ``AsyncConnection`` transaction with ``SELECT ... FOR UPDATE`` and ``UPDATE``.

Frames per cycle and per save count the service's frames (``LockerService._frame``
calls) over the rounds. Prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from peers import redis_asyncio_peer

from sessionlocker import AsyncLockerService, Spec
from sessionlocker.benchmarks.common import backend_name, make_data, rounded
from sessionlocker.benchmarks.raw import without_query
from sessionlocker.core.states import Status

CYCLES = 300
ROUNDS = 5

Cycle = Callable[[], Awaitable[None]]


async def compare(url: str) -> dict[str, Any]:
    template = json.dumps(make_data(1_000))
    spec = Spec("bench", lambda: json.loads(template), autosave_period=3600.0)
    key = f"aio-{uuid.uuid4().hex[:8]}"
    async with AsyncLockerService(url, spec) as service:
        frames = _count_frames(service)

        async def session_cycle() -> None:
            async with service.session(key) as player:
                player.data["coins"] += 1

        held = service.locker(f"{key}-held")
        held.acquire()
        await service.wait_until(lambda: held.status is Status.LOADED, 30)
        latencies: list[float] = []

        async def held_cycle() -> None:
            started = time.perf_counter()
            held.data["coins"] += 1
            held.mark_changed()
            held.force_save()
            await service.wait_until(lambda: not held.changes_pending)
            latencies.append(time.perf_counter() - started)

        label, peer_cycle, close = await _peer(url, template)
        ways: dict[str, Cycle] = {
            "session() per cycle": session_cycle,
            "long-held save": held_cycle,
            label: peer_cycle,
        }
        rates: dict[str, list[float]] = {way: [] for way in ways}
        counted: dict[str, int] = dict.fromkeys(ways, 0)
        try:
            for _ in range(ROUNDS):
                for way, cycle in ways.items():
                    before = frames[0]
                    rates[way].append(await _rate(cycle))
                    counted[way] += frames[0] - before
        finally:
            await close()
        held.release()
        await service.wait_until(lambda: held.status is not Status.RELEASING, 30)
    medians = {way: statistics.median(found) for way, found in rates.items()}
    latencies.sort()
    return {
        "cycles_per_s": {way: rounded(rate) for way, rate in medians.items()},
        "session_over_peer": rounded(medians["session() per cycle"] / medians[label]),
        "frames_per_session_cycle": counted["session() per cycle"] / (ROUNDS * CYCLES),
        "frames_per_held_save": counted["long-held save"] / (ROUNDS * CYCLES),
        "held_save_us": {
            "p50": rounded(latencies[len(latencies) // 2] * 1e6),
            "p99": rounded(latencies[int(len(latencies) * 0.99)] * 1e6),
        },
    }


def _count_frames(service: AsyncLockerService[Any]) -> list[int]:
    """A counter of the service's frames (every call of ``LockerService._frame``)."""
    count = [0]
    frames = service.frames
    frame = frames._frame

    def counted(*args: Any, **kwargs: Any) -> None:
        count[0] += 1
        frame(*args, **kwargs)

    frames._frame = counted  # type: ignore[method-assign]
    return count


async def _rate(cycle: Cycle) -> float:
    start = time.perf_counter()
    for _ in range(CYCLES):
        await cycle()
    return CYCLES / (time.perf_counter() - start)


async def _peer(url: str, template: str) -> tuple[str, Cycle, Callable[[], Awaitable[None]]]:
    if backend_name(url) == "redis":
        cycle, close = await redis_asyncio_peer(url, template)
        return "redis.asyncio Lock + GET/SET", cycle, close
    import psycopg  # noqa: PLC0415

    connection = await psycopg.AsyncConnection.connect(without_query(url))
    table = f"sessionlocker_bench_aio_{uuid.uuid4().hex[:8]}"
    async with connection.transaction():
        await connection.execute(f"CREATE TABLE {table} (key text PRIMARY KEY, data text)")
        await connection.execute(f"INSERT INTO {table} VALUES ('player', %s)", (template,))

    async def pg_cycle() -> None:
        async with connection.transaction():
            cursor = await connection.execute(
                f"SELECT data FROM {table} WHERE key = 'player' FOR UPDATE"
            )
            row = await cursor.fetchone()
            assert row is not None
            data = json.loads(row[0])
            data["coins"] += 1
            await connection.execute(
                f"UPDATE {table} SET data = %s WHERE key = 'player'",
                (json.dumps(data, separators=(",", ":")),),
            )

    async def pg_close() -> None:
        await connection.execute(f"DROP TABLE {table}")
        await connection.commit()
        await connection.close()

    return "psycopg async SELECT ... FOR UPDATE + UPDATE", pg_cycle, pg_close


async def main(urls: list[str]) -> None:
    found = {backend_name(url): await compare(url) for url in urls}
    print(json.dumps({"cycles": CYCLES, "rounds": ROUNDS, "backends": found}, indent=2))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
