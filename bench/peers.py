"""``session()`` per cycle beside other ways to lock a record, in the same process.

One job, done over and over on one 1 KB record: open it exclusively, change it, save
it, let it go. Cycles per second of each way, in alternating rounds (median of rounds):

- ``sessionlocker session()``: ``with service.session(key) as locker`` (load with the
  default ``repeat`` mode, change the data, the final save and release at exit);
- ``sessionlocker long-held``: the same service keeps the record loaded and saves it
  every cycle (change, ``mark_changed``, ``force_save``, frames until confirmed);
- Redis, ``redis-py Lock + GET/SET``: ``client.lock(...)`` (a ``SET NX PX`` token and a
  Lua release), ``GET``, ``json.loads``, change, ``json.dumps``, ``SET``, release;
- PostgreSQL, ``SQLAlchemy SELECT ... FOR UPDATE``: a SQLAlchemy 2 ORM session on psycopg
  3, ``select(Row).where(...).with_for_update()``, change, commit;
- asyncio, each on an event loop of its own: ``sessionlocker async session()``
  (``async with service.session(key)`` on ``AsyncLockerService`` and the URL's async
  store) and, on Redis, ``redis.asyncio Lock + GET/SET`` (the same steps awaited).

SQLAlchemy is not a dependency of sessionlocker: ``bench/run.py`` installs it into the
environment it runs in (``ensure_peers``) when it is missing, and a peer whose
library is missing is left out with the reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sessionlocker import AsyncLockerService, LockerService, Spec
from sessionlocker.benchmarks.common import Sizes, backend_name, make_data, rounded
from sessionlocker.benchmarks.raw import without_query
from sessionlocker.core.states import Status
from sessionlocker.errors import SessionLockerError

__all__ = ["PEER_PACKAGES", "ensure_peers", "peers"]

#: What the peers need beyond sessionlocker's own extras.
PEER_PACKAGES = {"sqlalchemy": "sqlalchemy>=2.0"}

Cycle = Callable[[], None]
#: Runs a way's cycles: as many as it is given.
Run = Callable[[int], None]


def ensure_peers() -> dict[str, str]:
    """Install the peers' libraries with pip when missing; what could not be, and why."""
    missing = {}
    for module, requirement in PEER_PACKAGES.items():
        if importlib.util.find_spec(module) is not None:
            continue
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", requirement],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            missing[module] = f"pip install {requirement} failed: {done.stderr.strip()[-300:]}"
    return missing


def peers(urls: list[str], sizes: Sizes) -> dict[str, Any]:
    """Every way for each Redis or PostgreSQL URL in ``urls`` (others are skipped)."""
    found: dict[str, Any] = {}
    for url in urls:
        name = backend_name(url)
        if name in ("redis", "postgresql"):
            try:
                found[name] = _compare(url, name, sizes)
            except Exception as exc:  # one backend failing must not lose the other's figures
                found[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "record_bytes": len(json.dumps(make_data(1_000))),
        "cycles_per_round": sizes.peer_cycles,
        "backends": found,
        "method": "open exclusively, change, save, release; alternating rounds, median",
    }


def _compare(url: str, name: str, sizes: Sizes) -> dict[str, Any]:
    template = json.dumps(make_data(1_000))
    spec = Spec("bench", lambda: json.loads(template), autosave_period=3600.0)
    key = f"peer-{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    with LockerService(url, spec) as service:
        held_key = f"{key}-held"
        ways: dict[str, tuple[Run, Callable[[], None]]] = {
            "sessionlocker session()": (_repeat(_session_cycle(service, key)), lambda: None),
        }
        held, stop_held = _held_cycle(service, held_key)
        ways["sessionlocker long-held"] = (_repeat(held), stop_held)
        peer = _redis_peer if name == "redis" else _sqlalchemy_peer
        label, cycle, close = peer(url, template)
        ways[label] = (_repeat(cycle), close)
        ways["sessionlocker async session()"] = _async_session(loop, url, spec, key)
        if name == "redis":
            ways["redis.asyncio Lock + GET/SET"] = _async_redis_peer(loop, url, template)
        try:
            rates: dict[str, list[float]] = {way: [] for way in ways}
            for _ in range(3):
                for way, (run, _close) in ways.items():
                    rates[way].append(_rate(run, sizes.peer_cycles))
        finally:
            for _run, stop in ways.values():
                stop()
            loop.close()
        service.store.delete(spec.store_key(key))
        service.store.delete(spec.store_key(held_key))
    medians = {way: statistics.median(found) for way, found in rates.items()}

    def ratio(way: str) -> float | None:
        """Our ``session()`` over ``way``'s rate: the async one against an asyncio peer."""
        if way.startswith("sessionlocker"):
            return None
        ours = "sessionlocker async session()" if "asyncio" in way else "sessionlocker session()"
        return rounded(medians[ours] / medians[way])

    return {
        "systems": {
            way: {"cycles_per_s": rounded(rate), "ours_ratio": ratio(way)}
            for way, rate in medians.items()
        },
    }


def _rate(run: Run, cycles: int) -> float:
    start = time.perf_counter()
    run(cycles)
    return cycles / (time.perf_counter() - start)


def _repeat(cycle: Cycle) -> Run:
    def run(cycles: int) -> None:
        for _ in range(cycles):
            cycle()

    return run


def _on_loop(loop: asyncio.AbstractEventLoop, cycle: Callable[[], Awaitable[None]]) -> Run:
    """Run: the cycles awaited one after the other in one pass of ``loop``."""

    async def cycles(count: int) -> None:
        for _ in range(count):
            await cycle()

    return lambda count: loop.run_until_complete(cycles(count))


def _async_session(
    loop: asyncio.AbstractEventLoop, url: str, spec: Spec[Any], key: str
) -> tuple[Run, Callable[[], None]]:
    """``async with service.session(key)`` per cycle, on the URL's async store."""

    async def opened() -> AsyncLockerService[Any]:
        return AsyncLockerService(url, spec)

    service = loop.run_until_complete(opened())

    async def cycle() -> None:
        async with service.session(key) as player:
            player.data["coins"] += 1

    return _on_loop(loop, cycle), lambda: loop.run_until_complete(service.aclose())


def _session_cycle(service: LockerService, key: str) -> Cycle:
    def cycle() -> None:
        with service.session(key) as locker:
            locker.data["coins"] += 1

    return cycle


def _held_cycle(service: LockerService, key: str) -> tuple[Cycle, Callable[[], None]]:
    locker = service.locker(key)
    locker.acquire()
    if not service.run_until(lambda: locker.status is Status.LOADED, timeout=30):
        raise SessionLockerError(f"{key!r} did not load: {locker.error}")

    def cycle() -> None:
        locker.data["coins"] += 1
        locker.mark_changed()
        locker.force_save()
        if not service.run_until(lambda: not locker.changes_pending, timeout=30):
            raise SessionLockerError(f"a save was not confirmed in 30 s ({locker.error})")

    def close() -> None:
        locker.release()
        service.run_until(lambda: locker.status is not Status.RELEASING, timeout=30)

    return cycle, close


def _redis_peer(url: str, template: str) -> tuple[str, Cycle, Callable[[], None]]:
    import redis  # noqa: PLC0415 (only for a Redis run)

    client: Any = redis.Redis.from_url(without_query(url))
    key = f"sessionlocker-bench-peer:{uuid.uuid4().hex[:8]}"
    client.set(key, template)

    def cycle() -> None:
        with client.lock(f"{key}:lock", timeout=10, blocking_timeout=10):
            data = json.loads(client.get(key))
            data["coins"] += 1
            client.set(key, json.dumps(data, separators=(",", ":")))

    def close() -> None:
        client.delete(key)
        client.close()

    return "redis-py Lock + GET/SET", cycle, close


def _async_redis_peer(
    loop: asyncio.AbstractEventLoop, url: str, template: str
) -> tuple[Run, Callable[[], None]]:
    cycle, close = loop.run_until_complete(redis_asyncio_peer(url, template))
    return _on_loop(loop, cycle), lambda: loop.run_until_complete(close())


async def redis_asyncio_peer(
    url: str, template: str
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """The asyncio peer on Redis: ``redis.asyncio`` ``Lock`` + GET/SET (cycle, close)."""
    import redis.asyncio  # noqa: PLC0415 (only for a Redis run)

    client: Any = redis.asyncio.Redis.from_url(without_query(url))
    key = f"sessionlocker-bench-peer:{uuid.uuid4().hex[:8]}"
    await client.set(key, template)

    async def cycle() -> None:
        async with client.lock(f"{key}:lock", timeout=10, blocking_timeout=10):
            data = json.loads(await client.get(key))
            data["coins"] += 1
            await client.set(key, json.dumps(data, separators=(",", ":")))

    async def close() -> None:
        await client.delete(key)
        await client.aclose()

    return cycle, close


def _sqlalchemy_peer(url: str, template: str) -> tuple[str, Cycle, Callable[[], None]]:
    from sqlalchemy import String, Text, create_engine, select  # noqa: PLC0415
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column  # noqa: PLC0415

    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = f"sessionlocker_bench_peer_{uuid.uuid4().hex[:8]}"
        # Without Mapped[...] annotations: this module's annotations are strings, which
        # SQLAlchemy resolves at module level, where these optional names are not.
        key = mapped_column(String, primary_key=True)
        data = mapped_column(Text, nullable=False)

    address = without_query(url).replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(address.replace("postgres://", "postgresql+psycopg://", 1))
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(Row(key="player", data=template))

    def cycle() -> None:
        with Session(engine) as session, session.begin():
            row = session.execute(
                select(Row).where(Row.key == "player").with_for_update()
            ).scalar_one()
            data = json.loads(row.data)
            data["coins"] += 1
            row.data = json.dumps(data, separators=(",", ":"))

    def close() -> None:
        Base.metadata.drop_all(engine)
        engine.dispose()

    return "SQLAlchemy 2 SELECT ... FOR UPDATE (psycopg)", cycle, close
