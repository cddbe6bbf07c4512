"""``replicas=N``: a record command counts only once N replicas acknowledged it (a fenced
``WAIT`` on the command's connection), on a real primary with a replica behind Sentinel;
and the URL forms of ``redis+sentinel://``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from backends import drive, fast_spec, load
from servers import SentinelServers
from sessionlocker import LockerService
from sessionlocker.core.protocol import Put, Update, Updated, Versioned
from sessionlocker.errors import StoreError, UsageError
from sessionlocker.sim.local.redis_sentinel import Process
from sessionlocker.stores import RedisStore, Store, open_async_store, open_store
from sessionlocker.stores.base import update_many


@pytest.fixture
def replica(private_sentinel: SentinelServers) -> Iterator[Process]:
    """The replica of the private topology, resumed at the end if a test froze it."""
    topology = private_sentinel.topology
    primary = topology.primary_port()
    found = next(node for node in topology.nodes if node.port != primary)
    yield found
    assert found.process is not None
    os.kill(found.process.pid, signal.SIGCONT)


def freeze(node: Process) -> None:
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGSTOP)


def thaw(node: Process) -> None:
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGCONT)


def settled(store: Store, key: str) -> Versioned | None:
    """``store.read(key)`` once the replica acknowledges again (it was just thawed)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return store.read(key)
        except StoreError:
            assert time.monotonic() < deadline, "the replica never acknowledged again"
            time.sleep(0.05)


def test_a_write_the_replica_did_not_confirm_is_an_unknown_outcome(
    private_sentinel: SentinelServers, replica: Process
) -> None:
    store = open_store(f"{private_sentinel.topology.base_url}?replicas=1&replica_timeout=0.3")
    try:
        revision = store.write("k", b"one", None)
        freeze(replica)
        with pytest.raises(StoreError) as written:
            store.write("k", b"two", revision)
        assert written.value.unknown_outcome
        assert written.value.retryable
        assert "0 of 1 replicas acknowledged within 0.3 s" in str(written.value)
        with pytest.raises(StoreError) as read:  # what it would see may not survive
            store.read("k")
        assert read.value.retryable
        assert not read.value.unknown_outcome
        thaw(replica)
        current = settled(store, "k")  # once the replica has it: the write landed
        assert current is not None
        assert current.value == b"two"
    finally:
        store.close()


def test_too_many_replicas_asked_never_counts(private_sentinel: SentinelServers) -> None:
    primary = private_sentinel.topology.primary_port()
    store = open_store(f"redis://127.0.0.1:{primary}/0?replicas=2&replica_timeout=0.2")
    try:
        with pytest.raises(StoreError) as written:
            store.write("k", b"v", None)
        assert written.value.unknown_outcome
        lease_only = open_store(f"redis://127.0.0.1:{primary}/0?replicas=2&replica_timeout=0.2")
        lease_only.put_lease("s", 5.0, b"")  # leases are not waited for
        assert lease_only.get_lease("s").exists
        lease_only.close()
    finally:
        store.close()


def test_when_saved_true_only_after_the_replica_has_the_save(
    private_sentinel: SentinelServers, replica: Process
) -> None:
    store = open_store(f"{private_sentinel.topology.url}&prefix=saved:")
    service = LockerService(store, fast_spec(lease=3.0, force_timeout=2.0))
    try:
        locker = load(service, "p1")
        heard: list[bool] = []
        freeze(replica)
        locker.data["log"].append("kept")
        locker.when_saved(locker.mark_changed(), heard.append)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # saves are tried, none can be confirmed
            service.update()
            time.sleep(0.02)
        assert heard == []
        thaw(replica)
        drive([service], lambda: heard == [True], timeout=30)
    finally:
        service.close()
        store.close()


def test_the_async_store_waits_too(private_sentinel: SentinelServers, replica: Process) -> None:
    url = f"{private_sentinel.topology.base_url}?replicas=1&replica_timeout=0.3"

    async def scenario() -> None:
        store = open_async_store(url)
        try:
            revision = await store.write("k", b"one", None)
            freeze(replica)
            with pytest.raises(StoreError) as written:
                await store.write("k", b"two", revision)
            assert written.value.unknown_outcome
            thaw(replica)
            deadline = time.monotonic() + 30
            while True:
                try:
                    current = await store.read("k")
                    break
                except StoreError:
                    assert time.monotonic() < deadline, "the replica never acknowledged again"
                    await asyncio.sleep(0.05)
            assert current is not None
            assert current.value == b"two"
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_sentinel_url_forms() -> None:
    store = open_store("redis+sentinel://a:1,b,c:3/game?db=2&replicas=1&prefix=x:")
    assert isinstance(store, RedisStore)
    assert "the primary of 'game' (sentinels a:1,b:26379,c:3)/2" in repr(store)
    store.close()
    bad = [
        ("redis+sentinel:///game", "sentinels"),
        ("redis+sentinel://a:1/", "service"),
        ("redis+sentinel://a:1/game?ca=x", "unknown option 'ca'"),
        ("redis+sentinel://a:99999/game", "port"),
        ("redis://h/0?replicas=1&replica_timeout=5&timeout=5", "replica_timeout"),
        ("redis://h/0?replicas=-1", "replicas"),
    ]
    for url, words in bad:
        with pytest.raises(UsageError, match=words):
            open_store(url)


def test_a_batch_counts_each_write_only_once_the_replicas_have_it(
    private_sentinel: SentinelServers,
) -> None:
    primary = private_sentinel.topology.primary_port()
    plain = open_store(f"redis://127.0.0.1:{primary}/0")
    waiting = open_store(f"redis://127.0.0.1:{primary}/0?replicas=1&replica_timeout=1")
    too_many = open_store(f"redis://127.0.0.1:{primary}/0?replicas=2&replica_timeout=0.2")
    try:
        known = {key: plain.write(key, b"0", None) for key in ("a", "b")}
        updates = [
            Update(key=key, transform=lambda _: Put(b"1", "put"), known=Versioned(b"0", rev))
            for key, rev in known.items()
        ]
        for result in update_many(too_many, updates):  # one WAIT for the pipeline: short
            assert isinstance(result, StoreError)
            assert result.unknown_outcome
        current = {key: plain.read(key) for key in known}
        again = [
            Update(key=key, transform=lambda _: Put(b"2", "put"), known=found)
            for key, found in current.items()
        ]
        for result in update_many(waiting, again):  # the replica acknowledges: each counts
            assert isinstance(result, Updated)
            assert result.wrote
    finally:
        for store in (plain, waiting, too_many):
            store.close()
