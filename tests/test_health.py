"""Store health (ProfileService's ``IsCriticalState`` / ``OnCriticalToggle``, ProfileStore's
``OnError``): the critical state, the per-failure callback, the metric, the locker's
``error`` event while a load waits on a dead store, and the log line of a locker error.

Failures are injected with ``FaultyStore`` over memory and SQLite, and are real on Redis
and PostgreSQL: a private server of the test's own is stopped, then started again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, fast_spec, open_backend
from servers import PostgresServer, RedisServer
from sessionlocker import (
    AsyncLockerService,
    LockerService,
    SessionLockerError,
    Status,
    StoreError,
    StoreFailure,
    UsageError,
)
from sessionlocker.core.locker import Locker
from sessionlocker.drivers.health import StoreHealth
from sessionlocker.metrics import MemoryMetrics
from sessionlocker.stores import MemoryStore, Store, open_store
from sessionlocker.stores.faults import FaultyStore


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path)
    yield made
    made.close()


class Watched:
    """A service with its critical toggles, store failures and one locker's errors."""

    def __init__(self, store: Store, **options: object) -> None:
        self.metrics = MemoryMetrics()
        self.service = LockerService(
            store, fast_spec(), metrics=self.metrics, critical_errors=3, **options
        )
        self.toggles: list[bool] = []
        self.failures: list[StoreFailure] = []
        self.errors: list[SessionLockerError | None] = []
        self.service.on_critical(self.toggles.append)
        self.service.on_store_error(self.failures.append)

    def load(self, key: str) -> Locker:
        locker = self.service.locker(key)
        locker.on("error", lambda lk: self.errors.append(lk.error))
        locker.acquire()
        return locker

    def wait(self, done: object, timeout: float = 30.0) -> None:
        assert callable(done)
        assert self.service.run_until(done, timeout=timeout), "timed out"


# ---------------------------------------------------------------- the rule


def test_critical_after_enough_errors_within_the_window_and_over_at_a_success() -> None:
    health = StoreHealth(errors=3, window=10.0)
    assert not health.failed(0.0)
    assert not health.failed(5.0)
    assert not health.failed(11.0)  # the one at 0 s fell out of the window
    assert not health.succeeded()  # not critical: nothing to end
    assert health.failed(12.0)  # 5, 11, 12: three within 10 s
    assert health.critical
    assert not health.failed(13.0)  # already critical
    assert health.succeeded()
    assert not health.critical
    assert not health.failed(14.0)  # counting starts again after a success
    assert not health.failed(15.0)
    assert health.failed(16.0)


@pytest.mark.parametrize(("errors", "window"), [(0, 1.0), (True, 1.0), (2, 0), (2, float("inf"))])
def test_bad_health_settings_are_refused(errors: int, window: float) -> None:
    with pytest.raises(UsageError, match="critical_"):
        LockerService(MemoryStore(), fast_spec(), critical_errors=errors, critical_window=window)


# ---------------------------------------------------------------- memory and SQLite


def test_a_failing_store_is_critical_reported_per_call_and_healthy_again(
    backend: Backend,
) -> None:
    faulty = FaultyStore(backend.store, fail_rate=1.0)
    watched = Watched(faulty)
    started = time.monotonic()
    locker = watched.load("p1")
    # The load waits for the lease, which cannot be renewed: each failure reaches the
    # locker's ``error`` event at once, not after its load gives up.
    watched.wait(lambda: bool(watched.errors))
    assert isinstance(watched.errors[0], StoreError)
    assert time.monotonic() - started < 10
    watched.wait(lambda: watched.service.critical)
    assert watched.toggles == [True]
    assert watched.metrics.value("store_critical") == 1
    # the lease renewals and the mailbox reads that go with them
    assert {(f.operation, f.key) for f in watched.failures} <= {
        ("renew lease", None),
        ("mailbox", None),
    }
    assert any(f.operation == "renew lease" for f in watched.failures)
    assert all(isinstance(f.error, StoreError) for f in watched.failures)

    faulty.fail_rate = 0.0
    watched.wait(lambda: locker.is_available() and not watched.service.critical)
    assert watched.toggles == [True, False]
    assert watched.metrics.value("store_critical") == 0

    faulty.fail_rate = 1.0
    locker.force_save()
    watched.wait(lambda: any(f.operation == "save" for f in watched.failures))
    failure = next(f for f in watched.failures if f.operation == "save")
    assert failure.key == "p1"
    assert "injected failure" in str(failure.error)
    faulty.fail_rate = 0.0
    assert watched.service.close()
    assert watched.metrics.value("store_critical") == 0


def test_a_raising_callback_does_not_stop_the_frames(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = FaultyStore(backend.store, fail_rate=1.0)
    watched = Watched(faulty)

    def broken(failure: StoreFailure) -> None:
        raise RuntimeError("a bug in the game's callback")

    watched.service.on_store_error(broken)
    locker = watched.load("p1")
    with caplog.at_level(logging.ERROR, logger="sessionlocker.service"):
        watched.wait(lambda: watched.service.critical)
    faulty.fail_rate = 0.0
    watched.wait(locker.is_available)
    assert watched.service.close()
    failed = [r for r in caplog.records if "store health callback failed" in r.getMessage()]
    assert failed
    assert failed[0].session == watched.service.lease_id  # type: ignore[attr-defined]


def test_the_async_service_toggles_from_its_frame_task(backend: Backend) -> None:
    faulty = FaultyStore(backend.store, fail_rate=1.0)
    toggles: list[bool] = []
    failures: list[StoreFailure] = []

    async def play() -> None:
        service = AsyncLockerService(faulty, fast_spec(), critical_errors=2)
        stop = service.on_critical(toggles.append)
        service.on_store_error(failures.append)
        locker = service.locker("p1")
        locker.acquire()
        assert await service.wait_until(lambda: service.critical, timeout=30)
        faulty.fail_rate = 0.0
        assert await service.wait_until(
            lambda: locker.status is Status.LOADED and not service.critical, timeout=30
        )
        stop()
        assert await service.aclose()

    asyncio.run(play())
    assert toggles == [True, False]
    assert failures
    assert all(f.operation in ("renew lease", "mailbox") for f in failures)


def test_a_locker_error_is_logged_with_its_message(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with LockerService(backend.store, fast_spec()) as service:
        service.send("p1", "gift", {"gems": 5})
        with caplog.at_level(logging.WARNING, logger="sessionlocker.locker"):
            with service.session("p1"):
                pass
    lines = [r.getMessage() for r in caplog.records if r.name == "sessionlocker.locker"]
    assert any(
        "error: UnhandledMessage: no handler for messages of kind 'gift'" in line for line in lines
    ), lines


# ---------------------------------------------------------------- Redis and PostgreSQL


def server_down_then_up(server: RedisServer | PostgresServer, url: str) -> None:
    """A load against a store whose server is down, until it is up again."""
    store = open_store(url)
    server.stop()
    watched = Watched(store)
    try:
        started = time.monotonic()
        locker = watched.load("p1")
        watched.wait(lambda: bool(watched.errors))
        assert isinstance(watched.errors[0], StoreError)
        assert time.monotonic() - started < 15
        watched.wait(lambda: watched.service.critical)
        assert watched.toggles == [True]
        assert watched.metrics.value("store_critical") == 1
        assert all(f.key is None or f.key == "p1" for f in watched.failures)
        server.start()
        watched.wait(lambda: locker.is_available() and not watched.service.critical, 60)
        assert watched.toggles == [True, False]
        assert watched.metrics.value("store_critical") == 0
        assert watched.service.close()
    finally:
        store.close()


def test_redis_down_is_critical_and_up_again_is_not(private_redis: RedisServer) -> None:
    server_down_then_up(private_redis, f"{private_redis.url}?timeout=0.5")


def test_postgresql_down_is_critical_and_up_again_is_not(
    private_postgres: PostgresServer,
) -> None:
    server_down_then_up(private_postgres, f"{private_postgres.url}?connect_timeout=1")
