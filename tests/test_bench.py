"""The benchmarks keep working: every part runs with tiny sizes and has the right shape.

Benchmarks are not tests: nothing here checks a timing. Round-trip counts are checked
to be positive whole numbers (they are counts, not timings), and the counting store
that makes them is checked to count what passes through it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from sessionlocker.benchmarks import PARTS, TINY, errors, markdown, run
from sessionlocker.cli.main import main
from sessionlocker.core.protocol import Keep, Put
from sessionlocker.stores import CountingStore, MemoryStore
from sessionlocker.stores.base import Notifying

BENCH = Path(__file__).parent.parent / "bench"
TRIPS = ("load", "save", "release", "handoff", "remote_change")


def assert_number(value: Any) -> None:
    assert isinstance(value, int | float), value
    assert not isinstance(value, bool), value
    assert value >= 0


def assert_percentiles(figures: dict[str, Any]) -> None:
    for name in ("p50", "p99", "min", "max"):
        assert_number(figures[name])
    assert figures["n"] >= 1


def assert_backend_shape(figures: dict[str, Any]) -> None:
    assert_number(figures["save_ratio"])
    for size in figures["save"]["by_size"].values():
        for name in ("ours_per_s", "raw_per_s", "ratio"):
            assert_number(size[name])
        assert isinstance(size["added_us"], float)  # may be below zero: a difference of rates
    for count, burst in figures["burst"]["by_lockers"].items():
        assert burst["lockers"] == int(count)
        for side in ("ours", "ours_gc_frozen", "raw_sequential", "raw_pipelined"):
            assert_number(burst[side]["saves_per_s"])
            assert_number(burst[side]["cpu_us_per_save"])
            assert burst[side]["latency_ms"]["n"] == int(count) * TINY.burst_rounds
        assert_number(burst["ratio_to_sequential"])
        assert_number(burst["ratio_to_pipelined"])
    trips = figures["round_trips"]
    for name in TRIPS:
        assert isinstance(trips[name], int), (name, trips[name])
        assert trips[name] > 0, (name, trips[name])
    assert figures["handoff_ms"]["with"] in ("polling", "notifications")
    assert_percentiles(figures["handoff_polling_ms"])
    assert_number(figures["handoff_ms"]["p50"])
    assert_number(figures["takeover_s"])
    assert figures["takeover"]["lease_s"] == TINY.lease
    assert_number(figures["raw_round_trip_ms"])


def test_every_part_runs_on_memory_and_sqlite_and_the_results_have_their_shape(
    tmp_path: Path,
) -> None:
    urls = ["memory://", f"sqlite:///{tmp_path / 'bench.db'}"]
    results = run(urls, TINY)

    assert errors(results) == []
    json.dumps(results)  # plain JSON values only
    assert set(results["backends"]) == {"memory", "sqlite"}
    for figures in results["backends"].values():
        assert_backend_shape(figures)
    assert results["backends"]["sqlite"]["takeover"]["in_process"] is False
    for key in ("date", "machine", "versions", "how_to_reproduce"):
        assert results[key]
    for count in TINY.frame_lockers:
        assert_percentiles(results["frame"]["idle_frame_us"][str(count)])
        assert_number(results["frame"]["due_locker_us"][str(count)])
    for size in results["memory"]["by_data_size"].values():
        assert size["locker_total_bytes"] > 0
    table = markdown(results)
    assert "### Per backend" in table
    assert "| memory | sqlite |" in table
    assert "### Bursts" in table


def test_the_roblox_baselines_run_from_the_bench_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    baselines = importlib.import_module("baselines").baselines
    results = {"baselines": baselines(TINY, notifications=True)}
    systems = results["baselines"]["systems"]
    assert {"sessionlocker", "sessionlocker_notified", "profileservice", "profilestore"} == set(
        systems
    )
    for system in systems.values():
        assert_percentiles(system["handoff_s"])
        assert_percentiles(system["takeover_force_s"])
    assert "### Against ProfileService and ProfileStore" in markdown(results)


def test_the_peers_part_runs_on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    peers = importlib.import_module("peers").peers
    results = {"peers": peers([redis_url, "memory://"], TINY)}
    assert set(results["peers"]["backends"]) == {"redis"}
    systems = results["peers"]["backends"]["redis"]["systems"]
    assert set(systems) == {
        "sessionlocker session()",
        "sessionlocker long-held",
        "redis-py Lock + GET/SET",
        "sessionlocker async session()",
        "redis.asyncio Lock + GET/SET",
    }
    for figures in systems.values():
        assert_number(figures["cycles_per_s"])
    assert_number(systems["redis-py Lock + GET/SET"]["ours_ratio"])
    assert_number(systems["redis.asyncio Lock + GET/SET"]["ours_ratio"])
    assert "| redis | redis-py Lock + GET/SET |" in markdown(results)


def test_the_session_floor_runs_on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    rates = importlib.import_module("session_floor").main(redis_url, 5)
    assert set(rates) == {"two writes alone", "redis-py Lock + GET/SET"}
    for rate in rates.values():
        assert_number(rate)


def test_the_command_prints_json_for_the_parts_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["bench", "--store", "memory://", "--json", "--size", "tiny", "--only", "round_trips"]
    )
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    trips = results["backends"]["memory"]["round_trips"]
    assert [trips[name] > 0 for name in TRIPS] == [True] * len(TRIPS)
    assert "frame" not in results
    assert "save" not in results["backends"]["memory"]


def test_the_command_refuses_an_unknown_part_or_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--store", "memory://", "--only", "speed"]) == 2
    assert "parts are " + ", ".join(PARTS) in capsys.readouterr().err
    assert main(["bench", "--store", "nosuch://x"]) == 2
    assert "unknown scheme" in capsys.readouterr().err


def test_counting_store_counts_each_call_by_kind_and_passes_it_through() -> None:
    inner = MemoryStore()
    store = CountingStore(inner)
    revision = store.write("k", b"1", None)
    assert store.read("k") == inner.read("k")
    result = store.update("k", lambda current: Put(b"2", "wrote"))
    assert result.outcome == "wrote"
    assert store.update("k", lambda current: Keep("kept")).wrote is False
    store.put_lease("s", 5.0, b"{}")
    store.get_lease("s")
    assert sorted(store.keys()) == ["k"]
    assert store.delete("k", result.current.revision if result.current else revision)

    counts = store.counts()
    assert (counts["write"], counts["read"], counts["update"], counts["delete"]) == (1, 1, 2, 1)
    assert (counts["put_lease"], counts["get_lease"], counts["keys"]) == (1, 1, 1)
    assert store.total() == 8
    assert store.total(records_only=True) == 6
    assert store.reset() == counts
    assert store.total() == 0


def test_counting_store_keeps_or_hides_notifications() -> None:
    inner = MemoryStore()
    assert isinstance(inner, Notifying)
    woken: list[str] = []
    kept = CountingStore.wrap(inner)
    assert isinstance(kept, Notifying)
    watch = kept.watch(lambda key, revision=None: woken.append(key))
    watch.add("k")
    inner.write("k", b"1", None)
    assert woken == ["k"]
    assert kept.counts()["watch_add"] == 1
    watch.close()

    hidden = CountingStore.wrap(inner, notifications=False)
    assert not isinstance(hidden, Notifying)
    assert type(hidden) is CountingStore
