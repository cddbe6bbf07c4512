"""FaultyStore: the faults it injects, what each leaves behind, and how it counts them."""

from __future__ import annotations

import pytest

from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.errors import Conflict, StoreError, Throttled, UsageError
from sessionlocker.stores import FaultyStore, MemoryStore


def increment(current: Versioned | None) -> Put[int]:
    number = int(current.value) if current is not None else 0
    return Put(str(number + 1).encode(), number + 1)


def test_fail_rate_one_fails_every_call_and_changes_nothing() -> None:
    inner = MemoryStore()
    store = FaultyStore(inner, fail_rate=1.0, seed=7)
    with pytest.raises(StoreError) as caught:
        store.write("k", b"v", None)
    assert type(caught.value) is StoreError
    assert caught.value.retryable is True
    assert caught.value.unknown_outcome is False
    assert inner.read("k") is None

    with pytest.raises(StoreError):
        store.read("k")
    with pytest.raises(StoreError):
        store.update("k", increment)
    with pytest.raises(StoreError):
        store.put_lease("s", 1.0, b"")
    assert inner.get_lease("s").exists is False
    assert inner.read("k") is None
    assert store.faults["fail"] == 4
    assert store.faults["throttle"] == store.faults["unknown"] == 0


def test_throttle_carries_retry_after() -> None:
    inner = MemoryStore()
    store = FaultyStore(inner, throttle_rate=1.0, retry_after=0.3, seed=7)
    with pytest.raises(Throttled) as caught:
        store.write("k", b"v", None)
    assert caught.value.retry_after == 0.3
    assert caught.value.retryable is True
    assert inner.read("k") is None
    assert store.faults["throttle"] == 1


def test_lost_reply_after_a_committed_write() -> None:
    inner = MemoryStore()
    store = FaultyStore(inner, unknown_rate=1.0, seed=7)
    with pytest.raises(StoreError) as caught:
        store.write("k", b"v", None)
    assert caught.value.unknown_outcome is True
    assert caught.value.retryable is True
    # It did commit: a read (which never loses its reply) shows it.
    stored = store.read("k")
    assert stored is not None
    assert stored.value == b"v"
    assert store.faults["unknown"] == 1


def test_lost_reply_does_not_hide_a_conflict() -> None:
    inner = MemoryStore()
    inner.write("k", b"there", None)
    store = FaultyStore(inner, unknown_rate=1.0, seed=7)
    with pytest.raises(Conflict):
        store.write("k", b"v", None)
    assert store.faults["unknown"] == 0


def test_update_meets_faults_on_each_round_trip() -> None:
    inner = MemoryStore()
    store = FaultyStore(inner, unknown_rate=1.0, seed=7)
    with pytest.raises(StoreError) as caught:
        store.update("k", increment)
    assert caught.value.unknown_outcome is True
    assert inner.read("k") == Versioned(b"1", 1)


def test_latency_sleeps_before_each_round_trip() -> None:
    naps: list[float] = []
    store = FaultyStore(MemoryStore(), latency=0.25, sleep=naps.append)
    store.write("k", b"v", None)
    store.read("k")
    store.get_lease("s")
    assert naps == [0.25, 0.25, 0.25]
    assert store.faults["latency"] == 3


def test_same_seed_same_faults() -> None:
    def pattern(seed: int) -> list[str]:
        store = FaultyStore(MemoryStore(), fail_rate=0.3, throttle_rate=0.2, seed=seed)
        seen = []
        for _ in range(50):
            try:
                store.read("k")
            except Throttled:
                seen.append("throttle")
            except StoreError:
                seen.append("fail")
            else:
                seen.append("ok")
        assert store.faults["fail"] == seen.count("fail")
        assert store.faults["throttle"] == seen.count("throttle")
        return seen

    first = pattern(3)
    assert first == pattern(3)
    assert {"ok", "fail", "throttle"} <= set(first)


def test_updates_get_through_with_retries() -> None:
    store = FaultyStore(MemoryStore(), fail_rate=0.3, seed=11)
    done = 0
    while done < 20:
        try:
            store.update("counter", increment)
        except StoreError:
            continue
        done += 1
    stored = store.inner.read("counter")
    assert stored is not None
    assert int(stored.value) == 20
    assert store.faults["fail"] > 0


def test_close_is_never_faulty() -> None:
    inner = MemoryStore()
    store = FaultyStore(inner, fail_rate=1.0)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        inner.read("k")


@pytest.mark.parametrize(
    "options",
    [
        {"fail_rate": 1.5},
        {"fail_rate": -0.1},
        {"throttle_rate": float("nan")},
        {"unknown_rate": 2},
        {"latency": -1.0},
        {"retry_after": float("inf")},
    ],
)
def test_bad_options(options: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        FaultyStore(MemoryStore(), **options)  # type: ignore[arg-type]
