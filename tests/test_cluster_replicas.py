"""``replicas=N`` on ``redis+cluster://``: a record command counts only once N replicas
of its slot's primary acknowledged it (the command, a fence in the record's slot and
``WAIT``, on one connection to that primary), on a real 6-node cluster.

The tests that freeze a node, move slots or kill a primary use a cluster of their own
(``private_cluster``); the others share the run's cluster under a fresh prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import ClusterServer
from sessionlocker.core.protocol import Versioned
from sessionlocker.core.record import decode
from sessionlocker.errors import Conflict, StoreError
from sessionlocker.stores import Store, open_async_store, open_store
from sessionlocker.stores.redis._cluster import RedisClusterStore
from test_sentinel_failover import KEYS, SPEC, Appender, wait_until

pytestmark = pytest.mark.slow

#: A generous bound for anything the cluster must do on a busy machine (seconds).
PATIENCE = 60.0


def owner_port(store: RedisClusterStore, key: str) -> int:
    """The port of the primary that owns ``key``'s record, as redis-py sees it."""
    client = store.connect()
    try:
        return int(client.get_node_from_key(store._layout.name(b"r:", key)).port)
    finally:
        client.close()


def replica_of(server: ClusterServer, primary: int) -> int:
    """The port of the replica of the primary on port ``primary``."""
    nodes = server.topology.nodes()
    owner = next(node for node in nodes if node.port == primary)
    return next(node.port for node in nodes if node.replica_of == owner.node_id)


@pytest.fixture
def frozen(private_cluster: ClusterServer) -> Iterator[list[int]]:
    """Ports the test SIGSTOPs (resumed at the end)."""
    ports: list[int] = []
    yield ports
    for port in ports:
        os.kill(private_cluster.topology.processes[port].pid, signal.SIGCONT)


def settled(store: Store, key: str) -> Versioned | None:
    """``store.read(key)`` once the replicas acknowledge again."""
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            return store.read(key)
        except StoreError:
            assert time.monotonic() < deadline, "the replica never acknowledged again"
            time.sleep(0.05)


def test_a_write_the_slot_replica_did_not_confirm_is_an_unknown_outcome(
    private_cluster: ClusterServer, frozen: list[int]
) -> None:
    store = open_store(f"{private_cluster.url}?replicas=1&replica_timeout=0.3")
    assert isinstance(store, RedisClusterStore)
    try:
        revision = store.write("k", b"one", None)
        owner = owner_port(store, "k")
        other = next(
            key for key in (f"other-{n}" for n in range(100)) if owner_port(store, key) != owner
        )
        replica = replica_of(private_cluster, owner)
        os.kill(private_cluster.topology.processes[replica].pid, signal.SIGSTOP)
        frozen.append(replica)
        # Before any write of ours is pending: only the fence makes WAIT wait here.
        with pytest.raises(StoreError) as read:  # what it would see may not survive
            store.read("k")
        assert read.value.retryable
        assert not read.value.unknown_outcome
        with pytest.raises(StoreError) as written:
            store.write("k", b"two", revision)
        assert written.value.unknown_outcome
        assert written.value.retryable
        assert "0 of 1 replicas acknowledged within 0.3 s" in str(written.value)
        assert store.write(other, b"elsewhere", None) >= 1  # another slot's replica answers
        os.kill(private_cluster.topology.processes[replica].pid, signal.SIGCONT)
        frozen.remove(replica)
        current = settled(store, "k")  # once the replica has it: the write landed
        assert current is not None
        assert current.value == b"two"
    finally:
        store.close()


def test_too_many_replicas_asked_never_counts(redis_cluster_url: str) -> None:
    prefix = f"many-{uuid.uuid4().hex[:8]}:"
    store = open_store(f"{redis_cluster_url}?replicas=2&replica_timeout=0.2&prefix={prefix}")
    try:
        with pytest.raises(StoreError) as written:  # one replica per primary only
            store.write("k", b"v", None)
        assert written.value.unknown_outcome
        assert "0 of 2" not in str(written.value)  # the one replica did acknowledge
        assert "1 of 2 replicas acknowledged" in str(written.value)
        with pytest.raises(StoreError) as deleted:
            store.delete("k")
        assert deleted.value.unknown_outcome
        store.put_lease("s", 5.0, b"")  # leases are not waited for
        assert store.get_lease("s").exists
    finally:
        store.close()


def test_replicated_commands_work_and_leave_no_fence_key(redis_cluster_url: str) -> None:
    prefix = f"fence-{uuid.uuid4().hex[:8]}:"
    store = open_store(f"{redis_cluster_url}?replicas=1&history=3&prefix={prefix}")
    assert isinstance(store, RedisClusterStore)
    try:
        assert store.read("k") is None
        first = store.write("k", b"one", None)
        second = store.write("k", b"two", first)
        found = store.read("k")
        assert found is not None
        assert (found.value, found.revision) == (b"two", second)
        assert store.read_entry("k") is not None
        assert store.forget("k") >= 1
        assert store.delete("k", second)
        assert store.read("k") is None
        client = store.connect()
        try:
            names = list(client.scan_iter(match=f"{prefix}*", count=1000))
        finally:
            client.close()
        assert not [name for name in names if b"f:{" in name]
    finally:
        store.close()


def test_the_async_cluster_store_waits_too(redis_cluster_url: str) -> None:
    prefix = f"async-{uuid.uuid4().hex[:8]}:"

    async def scenario() -> None:
        waited = open_async_store(f"{redis_cluster_url}?replicas=1&prefix={prefix}")
        too_many = open_async_store(
            f"{redis_cluster_url}?replicas=2&replica_timeout=0.2&prefix={prefix}"
        )
        try:
            revision = await waited.write("k", b"one", None)
            found = await waited.read("k")
            assert found is not None
            assert (found.value, found.revision) == (b"one", revision)
            with pytest.raises(StoreError) as written:
                await too_many.write("k", b"two", revision)
            assert written.value.unknown_outcome
            assert "1 of 2 replicas acknowledged" in str(written.value)
            assert await waited.delete("k")
        finally:
            await waited.aclose()
            await too_many.aclose()

    asyncio.run(scenario())


def test_moved_and_ask_on_the_direct_connection_are_never_data_errors(
    private_cluster: ClusterServer,
) -> None:
    store = open_store(f"{private_cluster.url}?replicas=1&timeout=2")
    assert isinstance(store, RedisClusterStore)
    keys = [f"key-{number}" for number in range(200)]
    revisions = {key: store.write(key, b"0", None) for key in keys}
    manager = store._cluster().nodes_manager
    refreshes: list[float] = []
    initialize = manager.initialize

    def counted(*args: object, **kwargs: object) -> object:
        refreshes.append(time.monotonic())
        return initialize(*args, **kwargs)

    manager.initialize = counted  # type: ignore[method-assign]
    refusals: list[StoreError] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def keep_writing() -> None:
        count = 0
        while not done.is_set():
            count += 1
            for key in keys:
                value = b"%d" % count
                try:
                    revisions[key] = store.write(key, value, revisions[key])
                except StoreError as exc:
                    if not exc.retryable:
                        failures.append(exc)
                        return
                    refusals.append(exc)
                    if exc.unknown_outcome:  # settled by reading, as the driver does
                        stored = settled(store, key)
                        if stored is not None and stored.value == value:
                            revisions[key] = stored.revision
                except BaseException as exc:
                    failures.append(exc)
                    return

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        _, target = private_cluster.topology.reshard(3000)
    finally:
        done.set()
        writer.join()
    try:
        assert not failures, failures[:3]
        moves = [refusal for refusal in refusals if "the slot moved" in str(refusal)]
        assert all(not refusal.unknown_outcome for refusal in moves), moves[:3]
        assert refreshes, "no MOVED or ASK reached the direct connection"
        moved = [key for key in keys if owner_port(store, key) == target]
        assert moved, "the reshard moved none of the keys"
        for key in keys:  # every acknowledged write is there, at its revision
            stored = store.read(key)
            assert stored is not None
            assert stored.revision == revisions[key]
    finally:
        store.close()


def test_acknowledged_ids_survive_a_primary_sigkill(
    private_cluster: ClusterServer, tmp_path: Path
) -> None:
    """Three processes append ids to four shared keys (acknowledged on ``when_saved(True)``,
    ``replicas=1``); the primary of the first key is SIGKILLed, the cluster promotes its
    replica, the killed node is started again (it rejoins as a replica: until then
    ``WAIT 1`` has no replica on that shard). Every acknowledged id is in the records."""
    topology = private_cluster.topology
    url = f"{private_cluster.url}?replicas=1"
    appenders: list[Appender] = []
    with contextlib.ExitStack() as stack:

        @stack.callback
        def stop() -> None:
            (tmp_path / "stop").touch()
            for appender in appenders:
                appender.finish(timeout=60)

        appenders += [Appender(tmp_path, url, name) for name in ("A", "B", "C")]

        def acked() -> list[dict[str, Any]]:
            return [event for appender in appenders for event in appender.of("acked")]

        wait_until(lambda: len(acked()) >= 30, 90, "30 acknowledged ids before the failover")
        probe = open_store(url)
        assert isinstance(probe, RedisClusterStore)
        victim = owner_port(probe, SPEC.store_key(KEYS[0]))
        probe.close()
        killed = time.time()
        topology.fail_primary(victim)
        topology.wait_healthy()  # a replica promoted
        topology.restart(victim)  # back as a replica, in sync
        wait_until(
            lambda: any(event["at"] > killed for event in acked()), 60, "an ack after the kill"
        )
        after = len(acked())
        wait_until(lambda: len(acked()) >= after + 30, 90, "30 more acknowledged ids")
    store = open_store(url)
    try:
        final = {}
        for key in KEYS:
            versioned = store.read(SPEC.store_key(key))
            assert versioned is not None
            final[key] = decode(versioned.value).data["ids"]
    finally:
        store.close()
    for key, ids in final.items():
        assert len(ids) == len(set(ids)), f"an id applied twice in {key}"
    missing = [(e["key"], e["id"]) for e in acked() if e["id"] not in set(final[e["key"]])]
    assert not missing, f"acknowledged ids lost: {missing[:10]}"
    sessions: dict[tuple[str, int], set[str]] = defaultdict(set)
    for appender in appenders:
        for event in appender.of("loaded"):
            sessions[event["key"], event["epoch"]].add(event["session"])
    shared = {where: names for where, names in sessions.items() if len(names) > 1}
    assert not shared, f"two sessions loaded under one epoch: {shared}"


@pytest.mark.parametrize("private_cluster", [2], indirect=True, ids=["2-replicas"])
def test_with_two_replicas_saves_are_acknowledged_again_without_the_dead_node(
    private_cluster: ClusterServer,
) -> None:
    """The killed primary stays down: the store must find the promoted replica on its
    own (its slot map refreshed after the failed connection), and ``WAIT 1`` is met
    by the other replica."""
    topology = private_cluster.topology
    store = open_store(f"{private_cluster.url}?replicas=1&timeout=1&replica_timeout=0.5")
    assert isinstance(store, RedisClusterStore)
    try:
        revision: int | None = store.write("k", b"before", None)
        topology.fail_primary(owner_port(store, "k"))
        began = time.monotonic()
        written = None
        refusals: list[StoreError] = []
        while written is None:
            assert time.monotonic() - began < PATIENCE, f"no ack; last: {refusals[-1:]}"
            try:
                written = store.write("k", b"after", revision)
            except Conflict as conflict:  # an unknown outcome that had committed
                revision = None if conflict.current is None else conflict.current.revision
            except StoreError as exc:
                refusals.append(exc)
                time.sleep(0.1)
        assert all(refusal.retryable for refusal in refusals)
        assert topology.killed  # never restarted
        found = store.read("k")
        assert found is not None
        assert (found.value, found.revision) == (b"after", written)
    finally:
        store.close()
