"""The Redis Cluster store on a real 6-node cluster of its own: failover, resharding,
the slot layout, and the fleet simulation through both.

Each test starts a cluster of its own (``private_cluster``: 3 primaries, 3 replicas on
loopback, through ``sessionlocker.sim.local``), since it kills nodes or moves slots.
The conformance suite runs on the shared cluster of the run (``tests/stores``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import ClusterServer
from sessionlocker.core.protocol import Versioned
from sessionlocker.errors import StoreError
from sessionlocker.sim.run import Options, simulate
from sessionlocker.stores import open_store
from sessionlocker.stores.redis._cluster import RedisClusterStore

pytestmark = pytest.mark.slow

#: A generous bound for anything the cluster must do on a busy machine (seconds).
PATIENCE = 60.0


@pytest.fixture
def cluster_store(private_cluster: ClusterServer) -> Iterator[RedisClusterStore]:
    store = open_store(private_cluster.url + "?timeout=1")
    assert isinstance(store, RedisClusterStore)
    yield store
    store.close()


def owner_port(store: RedisClusterStore, key: str) -> int:
    """The port of the primary that owns ``key``'s record, as redis-py sees it."""
    client = store.connect()
    try:
        name = store._layout.name(b"r:", key)
        return int(client.get_node_from_key(name).port)
    finally:
        client.close()


def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not (callable(condition) and condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_record_its_counter_and_history_share_one_slot(cluster_store: RedisClusterStore) -> None:
    client = cluster_store.connect()
    try:
        for key in ("k", "}k", "a{b}c", "player-1"):
            layout = cluster_store._layout
            slots = {client.keyslot(layout.name(kind, key)) for kind in (b"r:", b"c:", b"h:")}
            slots.add(client.keyslot(layout.channel(key)))
            assert len(slots) == 1, key
    finally:
        client.close()


def test_a_write_survives_a_failover_and_the_watch_resubscribes(
    private_cluster: ClusterServer, cluster_store: RedisClusterStore
) -> None:
    topology = private_cluster.topology
    revision = cluster_store.write("k", b"before", None)
    woke: list[int | None] = []
    watch = cluster_store.watch(lambda key, seen: woke.append(seen))
    watch.add("k")
    until(lambda: woke, "the first wake (subscription confirmed)")
    topology.fail_primary(owner_port(cluster_store, "k"))
    began = time.monotonic()
    written = None
    refusals: list[StoreError] = []
    while written is None:  # every failure is a retryable StoreError, never data
        assert time.monotonic() - began < PATIENCE, "no write succeeded after the failover"
        try:
            written = cluster_store.write("k", b"after", revision)
        except StoreError as exc:
            refusals.append(exc)
            time.sleep(0.1)
    assert all(refusal.retryable for refusal in refusals)
    assert cluster_store.read("k") is not None
    assert cluster_store.read("k").value == b"after"  # type: ignore[union-attr]
    until(lambda: written in woke, "a wake from the promoted replica")
    watch.close()


def test_a_write_without_its_reply_is_an_unknown_outcome_settled_by_reading(
    private_cluster: ClusterServer,
) -> None:
    store = open_store(private_cluster.url + "?timeout=0.3")
    assert isinstance(store, RedisClusterStore)
    try:
        revision = store.write("k", b"before", None)
        owner = private_cluster.topology.processes[owner_port(store, "k")]
        os.kill(owner.pid, signal.SIGSTOP)  # well under cluster-node-timeout: no failover
        try:
            with pytest.raises(StoreError) as caught:
                store.write("k", b"after", revision)
        finally:
            os.kill(owner.pid, signal.SIGCONT)
        assert caught.value.unknown_outcome
        assert caught.value.retryable
        settled: list[Versioned] = []

        def read() -> bool:
            try:
                stored = store.read("k")
            except StoreError:
                return False
            settled.extend([] if stored is None else [stored])
            return stored is not None

        until(read, "a read once the primary runs again")
        assert settled[0] in (Versioned(b"before", revision), Versioned(b"after", revision + 1))
    finally:
        store.close()


def test_moved_and_ask_during_a_reshard_are_followed(
    private_cluster: ClusterServer, cluster_store: RedisClusterStore
) -> None:
    keys = [f"key-{number}" for number in range(200)]
    revisions = {key: cluster_store.write(key, b"0", None) for key in keys}
    failures: list[BaseException] = []
    done = threading.Event()

    def keep_writing() -> None:
        count = 0
        while not done.is_set():
            count += 1
            for key in keys:
                try:
                    revisions[key] = cluster_store.write(key, b"%d" % count, revisions[key])
                except BaseException as exc:
                    failures.append(exc)
                    return

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        source, target = private_cluster.topology.reshard(3000)
    finally:
        done.set()
        writer.join()
    assert not failures, failures[:3]
    moved = [key for key in keys if owner_port(cluster_store, key) == target]
    assert moved, "the reshard moved none of the keys"
    for key in keys:  # every acknowledged write is there, at its revision
        stored = cluster_store.read(key)
        assert stored is not None
        assert stored.revision == revisions[key]
    assert owner_port(cluster_store, moved[0]) != source


def saves_confirmed(folder: Path) -> int:
    """How many saves the fleet's histories under ``folder`` acknowledged so far."""
    return sum(
        path.read_text(errors="replace").count('"confirmed"') for path in folder.rglob("*.jsonl")
    )


def test_simulate_kills_a_primary_and_finds_no_violation(tmp_path: Path) -> None:
    report = simulate(
        Options(start="redis-cluster", failover=True, duration=20.0, seed=1, out=tmp_path)
    )
    assert report.failovers == 1
    assert report.failover_recovery_ms is not None
    assert report.ok, report.text()


def test_simulate_during_a_reshard_finds_no_violation(
    private_cluster: ClusterServer, tmp_path: Path
) -> None:
    outcome: list[object] = []

    def run() -> None:
        try:
            options = Options(store=private_cluster.url, duration=20.0, seed=2, out=tmp_path)
            outcome.append(simulate(options))
        except BaseException as exc:
            outcome.append(exc)

    fleet = threading.Thread(target=run)
    fleet.start()
    until(lambda: saves_confirmed(tmp_path) >= 50, "the fleet's first saves")
    private_cluster.topology.reshard(4000)  # during the run: it lasts 20 s
    fleet.join()
    report = outcome[0]
    assert not isinstance(report, BaseException), report
    assert report.ok, report.text()  # type: ignore[attr-defined]


def test_simulate_refuses_failover_without_start() -> None:
    from sessionlocker.sim.run import SimulationError  # noqa: PLC0415

    with pytest.raises(SimulationError, match="--failover"):
        simulate(Options(failover=True, duration=1.0))
