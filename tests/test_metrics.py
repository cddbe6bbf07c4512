"""Metrics: what a service and a purchaser report, on real stores, and the Prometheus text."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from backends import drive, load, open_backend
from sessionlocker import AsyncLockerService, LockerService, Purchaser, Spec, Status, UsageError
from sessionlocker.core.locker import Locker
from sessionlocker.metrics import METRICS, MemoryMetrics, Metrics, NoMetrics
from sessionlocker.prometheus import PrometheusMetrics, family_name
from sessionlocker.stores import FaultyStore, MemoryStore, Store

FAST = {"lease": 0.6, "autosave_period": 0.2, "force_timeout": 2.0, "poll_period": 0.02}


def spec() -> Spec:
    return Spec("players", lambda: {"coins": 0}, **FAST)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Memory, SQLite, and Redis (a fresh key prefix per test)."""
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def save(service: LockerService, locker: Locker) -> None:
    saved: list[bool] = []
    locker.data["coins"] += 1
    locker.when_saved(locker.mark_changed(), saved.append)
    locker.force_save()
    drive([service], lambda: bool(saved))
    assert saved == [True]


def test_saves_handoff_and_lockers_by_state(store: Store) -> None:
    a_metrics, b_metrics = MemoryMetrics(), MemoryMetrics()
    a = LockerService(store, spec(), metrics=a_metrics)
    b = LockerService(store, spec(), metrics=b_metrics)
    held = load(a, "h")
    assert a_metrics.value("lockers", state="loaded") == 1
    save(a, held)
    assert a_metrics.value("saves") == 1
    wanting = b.locker("h")
    wanting.acquire("force")  # a release request: A saves and hands the lock over
    drive([a, b], lambda: wanting.status is Status.LOADED)
    assert held.status is Status.IDLE
    assert a_metrics.value("handoffs", direction="out") == 1
    assert b_metrics.value("handoffs", direction="in") == 1
    assert a_metrics.value("handoffs", direction="in") == 0
    assert b_metrics.value("takeovers") == 0
    assert a_metrics.value("saves") == 2  # the change, then the release
    seconds = a_metrics.observations("save_seconds")
    assert len(seconds) == 2
    assert all(0 <= s < 10 for s in seconds)
    assert a_metrics.value("lockers", state="loaded") == 0
    assert b_metrics.value("lockers", state="loaded") == 1
    a.close()
    b.close()
    for metrics in (a_metrics, b_metrics):
        for state in ("loading", "waiting", "loaded", "releasing"):
            assert metrics.value("lockers", state=state) == 0
    assert b_metrics.value("saves") == 1  # B's release


def test_takeover_after_the_holders_lease_expired_and_its_lost_lock(store: Store) -> None:
    frozen_metrics, taker_metrics = MemoryMetrics(), MemoryMetrics()
    frozen = LockerService(store, spec(), metrics=frozen_metrics)
    taker = LockerService(store, spec(), metrics=taker_metrics)
    stale = load(frozen, "t")
    # ``frozen`` runs no more frames: its lease lapses and ``taker`` takes the lock over.
    fresh = taker.locker("t")
    fresh.acquire()
    drive([taker], lambda: fresh.status is Status.LOADED)
    assert taker_metrics.value("takeovers") == 1
    assert taker_metrics.value("handoffs", direction="in") == 0
    save(taker, fresh)
    stale.force_save()  # the frozen holder wakes up and finds the lock gone
    drive([frozen], lambda: stale.status is Status.LOST)
    assert frozen_metrics.value("locks_lost") == 1
    assert frozen_metrics.value("lockers", state="loaded") == 0
    assert taker_metrics.value("locks_lost") == 0
    frozen.close()
    taker.close()


def test_store_errors_by_kind_match_the_injected_faults() -> None:
    faulty = FaultyStore(
        MemoryStore(), fail_rate=0.2, throttle_rate=0.1, unknown_rate=0.15, retry_after=0.01, seed=3
    )
    metrics = MemoryMetrics()
    service = LockerService(faulty, spec(), metrics=metrics)
    for key in ("e1", "e2", "e3"):
        with service.session(key, timeout=20) as locker:
            for _ in range(3):
                save(service, locker)
    assert service.close()
    assert faulty.faults["fail"] + faulty.faults["throttle"] + faulty.faults["unknown"] > 3
    assert metrics.value("store_errors", kind="retryable") == faulty.faults["fail"]
    assert metrics.value("store_errors", kind="throttled") == faulty.faults["throttle"]
    assert metrics.value("store_errors", kind="unknown_outcome") == faulty.faults["unknown"]
    assert metrics.value("store_errors", kind="permanent") == 0
    # Three changes and a release per key; a save whose reply was lost counts once it is
    # confirmed, and the latency histogram holds only saves whose reply arrived.
    assert metrics.value("saves") == 3 * 4
    timed = len(metrics.observations("save_seconds"))
    assert 12 - faulty.faults["unknown"] <= timed <= 12


def test_the_asyncio_driver_reports_through_its_frames(store: Store) -> None:
    metrics = MemoryMetrics()

    async def play() -> None:
        async with AsyncLockerService(store, spec(), metrics=metrics) as service:
            assert service.metrics is metrics
            async with service.session("a") as profile:
                assert metrics.value("lockers", state="loaded") == 1
                profile.data["coins"] += 1
                await profile.saved(timeout=10)

    asyncio.run(play())
    assert metrics.value("saves") == 2  # the change, then the release
    assert metrics.value("lockers", state="loaded") == 0


def test_purchases_granted_and_deferred(store: Store) -> None:
    metrics = MemoryMetrics()
    service = LockerService(store, spec(), metrics=metrics)
    purchaser = Purchaser(service, lambda data, receipt: data.update(coins=data["coins"] + 10))
    load(service, "buyer")
    receipt = {"purchase_id": "p1", "product_id": "gems", "buyer": "buyer"}
    assert purchaser.process(receipt) == "granted"
    assert purchaser.process(receipt) == "granted"  # the platform retried: already granted
    away = {"purchase_id": "p2", "product_id": "gems", "buyer": "away"}
    assert purchaser.process(away) == "not_processed_yet"  # not loaded here
    assert metrics.value("purchases", result="granted") == 2
    assert metrics.value("purchases", result="deferred") == 1
    own = MemoryMetrics()
    assert Purchaser(service, lambda data, receipt: None, metrics=own).metrics is own
    service.close()


def test_prometheus_text_has_every_family_with_the_values(store: Store) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    a = LockerService(store, spec(), metrics=metrics)
    b = LockerService(store, spec(), metrics=metrics)  # two services share one registry
    held = load(a, "p")
    save(a, held)
    assert Purchaser(a, lambda data, receipt: None).process(
        {"purchase_id": "x", "product_id": "gems", "buyer": "p"}
    )
    wanting = b.locker("p")
    wanting.acquire("force")
    drive([a, b], lambda: wanting.status is Status.LOADED)
    samples = scrape(metrics.text())
    assert samples[("sessionlocker_handoffs_total", (("direction", "in"),))] == 1
    assert samples[("sessionlocker_handoffs_total", (("direction", "out"),))] == 1
    assert samples[("sessionlocker_lockers", (("state", "loaded"),))] == 1
    assert samples[("sessionlocker_purchases_total", (("result", "granted"),))] == 1
    saves = samples[("sessionlocker_saves_total", ())]
    assert saves >= 2  # the change and the release, and the purchase's save
    assert samples[("sessionlocker_save_seconds_count", ())] == saves
    assert samples[("sessionlocker_takeovers_total", ())] == 0
    assert samples[("sessionlocker_locks_lost_total", ())] == 0
    a.close()
    b.close()
    samples = scrape(metrics.text())
    assert samples[("sessionlocker_lockers", (("state", "loaded"),))] == 0
    families = {family.name for family in text_string_to_metric_families(metrics.text())}
    for name in METRICS:
        assert family_name(name).removesuffix("_total") in families


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_memory_metrics_check_names_and_labels() -> None:
    metrics: Metrics = MemoryMetrics()
    with pytest.raises(UsageError, match="not a counter"):
        metrics.count("savez")
    with pytest.raises(UsageError, match="takes labels"):
        metrics.count("store_errors")
    with pytest.raises(UsageError, match="not a gauge"):
        metrics.add("saves", 1)
    metrics.count("store_errors", {"kind": "throttled"}, 2)
    metrics.observe("save_seconds", 0.25)
    metrics.add("lockers", 1, {"state": "loaded"})
    assert isinstance(metrics, MemoryMetrics)
    assert metrics.summary().splitlines() == [
        'lockers{state="loaded"} 1',
        'store_errors{kind="throttled"} 2',
        "save_seconds count=1 mean=0.250000s max=0.250000s",
    ]
    NoMetrics().count("anything at all")  # the default drops everything, unchecked


def test_prometheus_names_the_extra_when_the_client_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # makes the import fail
    with pytest.raises(UsageError, match=r"sessionlocker\[metrics\]"):
        PrometheusMetrics()
