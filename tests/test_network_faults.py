"""Network faults between the library and real servers, through ``FaultProxy``.

Redis and PostgreSQL: a partition longer than the lease (the holder stops being
available, another service takes over, and after the heal the holder's pending change
never lands and it reports ``lost``); a reply dropped after its write committed
(resolved by re-reading: the change is confirmed and applied exactly once); a
connection cut or reset in the middle of a save; a blackhole during ``close`` and
``aclose`` (they return within their bound and name what they abandoned).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from backends import drive, fast_spec
from fault_support import MARGIN, ended_within, private_server, record_of, store_url, wait_for
from faultproxy import FaultProxy
from servers import PostgresServer, RedisServer
from sessionlocker import AsyncLockerService, LockerService, Status
from sessionlocker.core.locker import Locker
from sessionlocker.stores import open_store

pytestmark = pytest.mark.timeout(120)

CLOSE_TIMEOUT = 2.0


@pytest.fixture(scope="module", params=["redis", "postgresql"])
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer | PostgresServer]:
    started = private_server(request.param)
    yield started
    started.cleanup()


@pytest.fixture
def url(server: RedisServer | PostgresServer) -> str:
    """A fresh namespace on the server, reached directly."""
    kind = "redis" if isinstance(server, RedisServer) else "postgresql"
    return store_url(kind, server.url)


@pytest.fixture
def proxy(url: str) -> Iterator[FaultProxy]:
    started = FaultProxy.before(url)
    yield started
    started.close()


def _loaded(service: LockerService, key: str) -> Locker:
    locker = service.locker(key)
    locker.acquire()
    drive([service], lambda: locker.status is Status.LOADED, timeout=60)
    return locker


def _saved(service: LockerService, locker: Locker) -> bool:
    """Mark the data changed, force a save and wait for the answer."""
    answers: list[bool] = []
    locker.when_saved(locker.mark_changed(), answers.append)
    locker.force_save()
    drive([service], lambda: bool(answers), timeout=60)
    return answers == [True]


def test_a_partition_longer_than_the_lease_hands_over_and_the_stale_change_never_lands(
    url: str, proxy: FaultProxy
) -> None:
    holder = LockerService(proxy.url(url), fast_spec(lease=2.0))
    taker = LockerService(url, fast_spec(lease=2.0))
    try:
        stale = _loaded(holder, "p1")
        proxy.blackhole()
        stale.data["log"].append("stale")
        answers: list[bool] = []
        stale.when_saved(stale.mark_changed(), answers.append)
        stale.force_save()
        drive([holder], lambda: not stale.is_available(), timeout=60)
        fresh = taker.locker("p1")
        fresh.acquire()
        drive([holder, taker], lambda: fresh.status is Status.LOADED, timeout=60)
        assert "stale" not in fresh.data["log"]
        drive([holder], lambda: stale.status is Status.LOST and bool(answers), timeout=60)
        assert answers == [False]
        proxy.heal()  # what the partition held back (the stale save among it) goes through
        wait_for(lambda: holder.store.read("players/p1") is not None)
        fresh.data["log"].append("fresh")
        assert _saved(taker, fresh)
        drive([holder, taker], lambda: stale.status is Status.LOST, timeout=5)
        assert record_of(url, "players/p1").data["log"] == ["fresh"]  # type: ignore[attr-defined]
        assert fresh.status is Status.LOADED
    finally:
        proxy.heal()
        holder.close(timeout=CLOSE_TIMEOUT)
        assert taker.close(timeout=10)
    assert record_of(url, "players/p1").data["log"] == ["fresh"]  # type: ignore[attr-defined]


def test_a_reply_dropped_after_the_commit_is_resolved_and_applied_exactly_once(
    url: str, proxy: FaultProxy
) -> None:
    holder = LockerService(proxy.url(url), fast_spec(lease=30.0))
    sender = LockerService(url, fast_spec(lease=30.0))

    def gift(locker: Locker, message: Any) -> None:
        locker.data["log"].append(message.body)
        proxy.drop_replies()  # the save that applies it reaches the server, its reply not

    holder.on_message("gift", gift)
    try:
        locker = _loaded(holder, "p1")
        sender.send("p1", "gift", "g1")

        def committed() -> bool:
            holder.update()
            stored = record_of(url, "players/p1")
            return stored.data["log"] == ["g1"] and not stored.inbox  # type: ignore[attr-defined]

        wait_for(committed)
        proxy.heal()
        assert _saved(holder, locker)
        assert locker.data["log"] == ["g1"]
        assert holder.close(timeout=10)
    finally:
        proxy.heal()
        holder.close(timeout=CLOSE_TIMEOUT)
        sender.close(timeout=10)
    stored = record_of(url, "players/p1")
    assert stored.data["log"] == ["g1"]  # type: ignore[attr-defined]
    assert stored.lock is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", ["cut", "reset"])
def test_a_connection_lost_mid_save_still_saves_exactly_once(
    url: str, proxy: FaultProxy, fault: str
) -> None:
    holder = LockerService(proxy.url(url), fast_spec(lease=30.0, autosave_period=60.0))
    armed = [True]

    def break_it(_: Locker) -> None:  # runs just before the save is sent
        if not armed:
            return
        armed.clear()
        if fault == "cut":
            proxy.cut_after_request()  # the save goes out, then the connection is closed
        else:
            proxy.delay(1.0)  # the save is held in the proxy when every connection resets
            threading.Timer(0.3, proxy.reset_all).start()

    try:
        locker = _loaded(holder, "p1")
        locker.on("before_save", break_it)
        locker.data["log"].append("once")
        answers: list[bool] = []
        locker.when_saved(locker.mark_changed(), answers.append)
        locker.force_save()
        drive([holder], lambda: proxy.faults > 0, timeout=60)
        proxy.heal()
        drive([holder], lambda: bool(answers), timeout=60)
        assert answers == [True]
        assert locker.status is Status.LOADED
        assert holder.close(timeout=10)
    finally:
        proxy.heal()
        holder.close(timeout=CLOSE_TIMEOUT)
    assert record_of(url, "players/p1").data["log"] == ["once"]  # type: ignore[attr-defined]


def test_close_during_a_blackhole_returns_in_time_and_abandons_to_the_lease(
    url: str, proxy: FaultProxy
) -> None:
    holder = LockerService(proxy.url(url), fast_spec(lease=3.0))
    try:
        locker = _loaded(holder, "p1")
        proxy.blackhole()
        locker.data["log"].append("late")
        locker.mark_changed()
        with ended_within(CLOSE_TIMEOUT + 1 + MARGIN):
            report = holder.close(timeout=CLOSE_TIMEOUT)
        assert not report
        assert report.abandoned == ("p1",)
        assert not report.lease_dropped
    finally:
        proxy.heal()
    _taken_over(url)


def test_aclose_during_a_blackhole_returns_in_time_and_abandons_to_the_lease(
    url: str, proxy: FaultProxy
) -> None:
    async def scenario() -> None:
        service = AsyncLockerService(proxy.url(url), fast_spec(lease=3.0))
        service.start()
        locker = service.frames.locker("p1")
        locker.acquire()
        assert await service.wait_until(lambda: locker.status is Status.LOADED, 60)
        proxy.blackhole()
        locker.data["log"].append("late")
        locker.mark_changed()
        with ended_within(CLOSE_TIMEOUT + 1 + MARGIN):
            report = await service.aclose(timeout=CLOSE_TIMEOUT)
        assert not report
        assert report.abandoned == ("p1",)
        assert not report.lease_dropped

    try:
        asyncio.run(scenario())
    finally:
        proxy.heal()
    _taken_over(url)


def _taken_over(url: str) -> None:
    """Another service takes ``p1`` over once the abandoned lease lapsed."""
    service = LockerService(url, fast_spec(lease=3.0))
    try:
        with service.session("p1", timeout=60) as locker:
            assert locker.data["log"] in ([], ["late"])
    finally:
        assert service.close(timeout=10)


def test_the_proxy_passes_traffic_through(url: str, proxy: FaultProxy) -> None:
    store = open_store(proxy.url(url))
    try:
        revision = store.write("k", b"{}", None)
        assert store.read("k") is not None
        assert store.read("k").revision == revision  # type: ignore[union-attr]
    finally:
        store.close()
