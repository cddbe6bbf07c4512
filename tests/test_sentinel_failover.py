"""Failovers behind Redis Sentinel, on real servers started by the test on loopback.

A primary with one (or two) replicas and three sentinels (``SentinelServers``, the
topology of ``sessionlocker.sim.local.redis_sentinel``). The store URL asks for
``replicas=1``: a record write counts once a replica has it. The primary is SIGKILLed
mid-run; the sentinels promote a replica; the killed node is started again and claims
to be a primary until the sentinels demote it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import SentinelServers
from sessionlocker import Spec
from sessionlocker.core.record import decode
from sessionlocker.errors import Conflict, StoreError
from sessionlocker.sim.local.redis_sentinel import command, role
from sessionlocker.stores import open_store
from sessionlocker.stores.redis._sentinel import LOOK_AGAIN

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
]

APPENDER = Path(__file__).parent / "procs" / "appender.py"
SPEC = Spec("appends", lambda: {"ids": []})
KEYS = ["k1", "k2", "k3", "k4"]
#: Seconds from the SIGKILL to the first acknowledged id after it, at most. Measured
#: (bench/sentinel_pause.py): ~2.4 s with two replicas, ~13.4 s with one (WAIT 1 has
#: no replica until the killed node is back as one); generous for a busy machine.
BOUND = 60.0


class Appender:
    """One ``tests/procs/appender.py`` process and the events it reported."""

    def __init__(self, directory: Path, url: str, name: str) -> None:
        self.stderr_path = directory / f"{name}.stderr"
        self.stop = directory / "stop"
        command_line = [
            sys.executable, str(APPENDER), "--url", url, "--keys", ",".join(KEYS),
            "--name", name, "--stop", str(self.stop),
        ]  # fmt: skip
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                command_line,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for event in self.events if event["event"] == kind]

    def finish(self, timeout: float) -> None:
        """Wait for a clean exit (after the stop file), else kill; read everything."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def appenders(private_sentinel: SentinelServers, tmp_path: Path) -> Iterator[list[Appender]]:
    made = [Appender(tmp_path, private_sentinel.url, name) for name in ("A", "B", "C")]
    try:
        yield made
    finally:
        (tmp_path / "stop").touch()
        for appender in made:
            appender.finish(timeout=60)


@pytest.mark.parametrize("private_sentinel", [1, 2], indirect=True, ids=["1-replica", "2-replicas"])
def test_acknowledged_ids_survive_a_primary_sigkill(
    private_sentinel: SentinelServers, appenders: list[Appender], tmp_path: Path
) -> None:
    def acked() -> list[dict[str, Any]]:
        return [event for appender in appenders for event in appender.of("acked")]

    wait_until(lambda: len(acked()) >= 30, 90, "30 acknowledged ids before the failover")
    killed = time.time()
    private_sentinel.topology.fail_primary()  # then the promotion, the old node restarted
    wait_until(
        lambda: any(event["at"] > killed for event in acked()), BOUND, "an ack after the kill"
    )
    pause = min(event["at"] for event in acked() if event["at"] > killed) - killed
    print(f"first acknowledged id {pause:.2f} s after the SIGKILL")
    assert pause < BOUND
    after = len(acked())
    wait_until(lambda: len(acked()) >= after + 30, 90, "30 more acknowledged ids")
    (tmp_path / "stop").touch()
    for appender in appenders:
        appender.finish(timeout=60)

    store = open_store(private_sentinel.url)
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


def test_a_restarted_old_primary_is_never_written_to(private_sentinel: SentinelServers) -> None:
    topology = private_sentinel.topology
    store = open_store(topology.base_url)  # replicas=0: writes succeed during the window
    try:
        revision = store.write("counter", b"0", None)
        victim = topology.kill_primary()
        topology.wait_promoted(victim.port)
        victim.start()
        written: list[bytes] = []
        seen_clients: list[str] = []
        while role(victim.port) == "master":  # the old primary claims to be one
            value = str(len(written) + 1).encode()
            try:
                revision = store.write("counter", value, revision)
                written.append(value)
            except Conflict as conflict:
                revision = None if conflict.current is None else conflict.current.revision
            except StoreError:
                time.sleep(0.05)
            clients = command(victim.port, "CLIENT", "LIST")
            seen_clients += [line for line in str(clients).splitlines() if "sessionlocker" in line]
        assert written, "no write went through while the old primary claimed to be one"
        assert not seen_clients, f"the store connected to the old primary: {seen_clients}"
        stats = str(command(victim.port, "INFO", "commandstats"))
        assert "cmdstat_evalsha" not in stats
        assert "cmdstat_eval:" not in stats
        current = store.read("counter")
        assert current is not None
        assert current.value == written[-1]
    finally:
        store.close()


def test_a_watch_follows_the_primary(private_sentinel: SentinelServers) -> None:
    topology = private_sentinel.topology
    store = open_store(topology.base_url)
    woken: list[tuple[str, int | None]] = []
    try:
        watch = store.watch(lambda key, revision: woken.append((key, revision)))
        watch.add("watched")
        wait_until(lambda: woken, 30, "the watch's first wake (its subscription)")
        topology.fail_primary()
        topology.wait_recovered()
        revision: int | None = None
        deadline = time.monotonic() + 60
        while revision is None or not any(seen == revision for _key, seen in woken):
            assert time.monotonic() < deadline, "no wake from the new primary"
            try:
                current = store.read("watched")
                expected = None if current is None else current.revision
                revision = store.write("watched", b"after", expected)
            except StoreError:
                pass
            time.sleep(0.2)
        watch.close()
    finally:
        store.close()


def test_after_a_switchover_the_next_write_goes_to_the_new_primary(
    private_sentinel: SentinelServers,
) -> None:
    """``SENTINEL FAILOVER`` demotes a live primary (the sentinels also close its
    clients' connections): the store's next write goes to the new primary, no error."""
    topology = private_sentinel.topology
    store = open_store(topology.base_url)
    try:
        revision = store.write("k", b"before", None)
        old = topology.primary_port()
        assert old is not None
        command(topology.sentinel_ports[0], "SENTINEL", "FAILOVER", "sessionlocker")
        new = topology.wait_promoted(old)
        wait_until(lambda: role(old) == "slave", 60, "the old primary demoted")
        time.sleep(LOOK_AGAIN)  # the pool looks at the sentinels again after this
        revision = store.write("k", b"after", revision)  # no error: not sent to the old one
        assert "cmdstat_evalsha" in str(command(new, "INFO", "commandstats"))
        current = store.read("k")
        assert current is not None
        assert current.value == b"after"
        assert new != old
    finally:
        store.close()


def test_a_primary_that_was_cut_off_gets_no_write_on_an_old_connection(
    private_sentinel: SentinelServers,
) -> None:
    """A primary frozen (SIGSTOP) long enough to be failed over wakes up still claiming
    to be one, and the store's pooled connection to it is still open: the store asks
    the sentinels before using it, drops it, and writes to the new primary. (redis-py
    alone would send the write on that connection, and the old primary would take it,
    to lose it when it is demoted.)"""
    topology = private_sentinel.topology
    store = open_store(topology.base_url)
    old = topology.primary_port()
    assert old is not None
    frozen = topology.node(old)
    assert frozen.process is not None
    try:
        revision = store.write("k", b"before", None)  # a pooled connection to the old one
        os.kill(frozen.process.pid, signal.SIGSTOP)
        try:
            topology.wait_promoted(old)
        finally:
            os.kill(frozen.process.pid, signal.SIGCONT)
        assert role(old) == "master"  # it claims to be one for a while yet
        revision = store.write("k", b"after", revision)
        wait_until(lambda: role(old) == "slave", 60, "the old primary demoted")
        current = store.read("k")
        assert current is not None
        assert current.value == b"after"
    finally:
        store.close()


def test_a_node_the_sentinels_name_is_refused_unless_it_says_it_is_a_primary(
    private_sentinel: SentinelServers,
) -> None:
    """A sentinel told to monitor a replica as the primary of a service names it as one;
    the store's role check (``ROLE``) refuses to use it, reads included."""
    topology = private_sentinel.topology
    primary = topology.primary_port()
    replica = next(node.port for node in topology.nodes if node.port != primary)
    sentinel = topology.sentinel_ports[0]
    command(sentinel, "SENTINEL", "MONITOR", "misnamed", "127.0.0.1", str(replica), "1")
    store = open_store(f"redis+sentinel://127.0.0.1:{sentinel}/misnamed")
    try:
        with pytest.raises(StoreError, match="is not the primary"):
            store.read("k")
    finally:
        store.close()
        command(sentinel, "SENTINEL", "REMOVE", "misnamed")
