"""A throwaway Redis Cluster on loopback: 3 primaries, each with 1 (or 2) replicas.

Every node is a ``redis-server --cluster-enabled yes`` in a directory of its own under
``workdir``, with append-only persistence (``appendfsync always``) and a short
``cluster-node-timeout`` so a failover takes seconds; ``redis-cli --cluster create``
joins them. The topology talks to its nodes only through ``redis-cli``, so it needs no
Python client. ``fail_primary`` SIGKILLs a primary (its replica is promoted by the
cluster itself), ``restart`` brings a killed node back (it rejoins as a replica), and
``reshard`` moves slots between primaries with ``redis-cli --cluster reshard``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sessionlocker.errors import SessionLockerError

__all__ = ["ClusterNode", "RedisClusterTopology", "TopologyError"]

#: How long a node may take to listen, and the cluster to form or heal (seconds).
START_TIMEOUT = 60.0

#: Milliseconds without an answer before the cluster counts a node as failed.
NODE_TIMEOUT_MS = 2000


class TopologyError(SessionLockerError):
    """A local topology could not be started or changed; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: a node's id, port, role and, for a primary, slots."""

    node_id: str
    port: int
    primary: bool
    failed: bool
    slots: int
    #: The id of the primary this node replicates (``None`` for a primary).
    replica_of: str | None


def _free_port_pair() -> int:
    """A loopback port free now whose cluster bus port (``port + 10000``) is free too."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        if all(_bindable(candidate) for candidate in (port, port + 10000)):
            return port
    raise TopologyError("found no free pair of loopback ports for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise TopologyError(f"{name} is not installed (Debian: apt-get install redis-server)")
    return found


def _slot_count(fields: list[str]) -> int:
    count = 0
    for part in fields:
        if part.startswith("["):  # a slot being imported or migrated, not owned
            continue
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


class RedisClusterTopology:
    """A local Redis Cluster: ``url`` for the store, ``fail_primary()``, ``close()``.

    ``replicas`` is the number of replicas per primary (1 or 2). Use it as a context
    manager, or call ``start()`` and later ``close()``; ``close`` stops every node and
    removes ``workdir`` when the topology made it.
    """

    kind = "redis-cluster"

    def __init__(self, workdir: Path, *, primaries: int = 3, replicas: int = 1) -> None:
        if primaries < 3:
            raise TopologyError("a Redis Cluster needs at least 3 primaries")
        if replicas not in (1, 2):
            raise TopologyError("replicas must be 1 or 2 per primary")
        self.server = _binary("redis-server")
        self.cli = _binary("redis-cli")
        self.workdir = Path(workdir)
        self._made_workdir = not self.workdir.exists()
        self.replicas = replicas
        self.ports = [_free_port_pair() for _ in range(primaries * (1 + replicas))]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        #: The ports SIGKILLed by ``fail_primary`` and not restarted since.
        self.killed: list[int] = []

    def __enter__(self) -> RedisClusterTopology:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The store URL naming every node (the client finds the rest itself)."""
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+cluster://{nodes}/"

    # Starting and stopping.

    def start(self) -> None:
        """Start every node, form the cluster and wait until it serves every slot."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for port in self.ports:
                self._start_node(port)
            for port in self.ports:
                self._wait_listening(port)
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            self._run_cli(
                "--cluster", "create", *nodes,
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            )  # fmt: skip
            self.wait_healthy()
        except BaseException:
            self.close()
            raise

    def _start_node(self, port: int) -> None:
        directory = self.workdir / f"node-{port}"
        directory.mkdir(exist_ok=True)
        command = [
            self.server,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--repl-diskless-sync-delay", "0",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--logfile", str(directory / "redis.log"),
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def _wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.processes[port].poll() is not None:
                log = self.workdir / f"node-{port}" / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                raise TopologyError(f"redis-server on port {port} exited; log:\n{tail}")
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.02)
        raise TopologyError(f"redis-server did not listen on port {port}")

    def close(self) -> None:
        """Stop every node (SIGKILL: nothing is kept) and remove the work directory if
        this topology made it. Idempotent."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait()
        self.processes.clear()
        if self._made_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # Looking at the cluster.

    def _run_cli(self, *args: str, port: int | None = None, timeout: float = 60.0) -> str:
        command = [self.cli, "-h", "127.0.0.1"]
        if port is not None:
            command += ["-p", str(port)]
        result = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0 or result.stdout.startswith("ERR"):
            raise TopologyError(
                f"redis-cli {' '.join(args)} failed: {(result.stdout + result.stderr)[-2000:]}"
            )
        return result.stdout

    def alive_ports(self) -> list[int]:
        """The ports of the nodes whose process runs."""
        return [port for port, process in self.processes.items() if process.poll() is None]

    def nodes(self) -> list[ClusterNode]:
        """The cluster as a live node sees it (``CLUSTER NODES``)."""
        for port in self.alive_ports():
            try:
                text = self._run_cli("cluster", "nodes", port=port, timeout=5.0)
            except (TopologyError, subprocess.TimeoutExpired):
                continue
            return [self._node(line.split()) for line in text.splitlines() if line.strip()]
        raise TopologyError("no cluster node answers")

    @staticmethod
    def _node(fields: list[str]) -> ClusterNode:
        flags = fields[2].split(",")
        address = fields[1].split("@")[0]
        return ClusterNode(
            node_id=fields[0],
            port=int(address.rsplit(":", 1)[1]),
            primary="master" in flags,
            failed="fail" in flags or "fail?" in flags,
            slots=_slot_count(fields[8:]),
            replica_of=None if fields[3] == "-" else fields[3],
        )

    def primaries(self) -> list[ClusterNode]:
        """The primaries that own slots and are not failed, as a live node sees them."""
        return [node for node in self.nodes() if node.primary and not node.failed and node.slots]

    def healthy(self) -> bool:
        """Whether every live node says the cluster is ``ok``, all 16384 slots are
        owned by live primaries, and every other live node replicates one, in sync."""
        alive = self.alive_ports()
        for port in alive:
            try:
                info = self._run_cli("cluster", "info", port=port, timeout=5.0)
            except (TopologyError, subprocess.TimeoutExpired):
                return False
            if "cluster_state:ok" not in info:
                return False
        nodes = [node for node in self.nodes() if node.port in alive and not node.failed]
        owners = {node.node_id: node for node in nodes if node.primary and node.slots}
        followers = [node for node in nodes if node.node_id not in owners]
        following = all(node.replica_of in owners for node in followers)
        if not following or sum(node.slots for node in owners.values()) != 16384:
            return False
        return all(self._replicating(node.port) for node in followers)

    def _replicating(self, port: int) -> bool:
        """Whether the replica on ``port`` is in sync with its primary (link up)."""
        try:
            info = self._run_cli("info", "replication", port=port, timeout=5.0)
        except (TopologyError, subprocess.TimeoutExpired):
            return False
        return "master_link_status:up" in info

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> float:
        """Wait until ``healthy()``; how many seconds that took."""
        began = time.monotonic()
        while not self.healthy():
            if time.monotonic() - began > timeout:
                raise TopologyError(f"the cluster was not healthy within {timeout:g} s")
            time.sleep(0.1)
        return time.monotonic() - began

    # Changing it.

    def fail_primary(self, port: int | None = None) -> None:
        """SIGKILL one primary (the one on ``port`` if given); the cluster promotes one of
        its replicas on its own (``wait_healthy`` waits for that). The killed port is kept
        in ``killed``."""
        if port is None:
            port = self.primaries()[0].port
        os.kill(self.processes[port].pid, signal.SIGKILL)
        self.processes[port].wait()
        self.killed.append(port)

    def restart(self, port: int) -> None:
        """Start a killed node again on its data; it rejoins as a replica (this waits
        until it is in sync)."""
        self._start_node(port)
        self._wait_listening(port)
        if port in self.killed:
            self.killed.remove(port)
        deadline = time.monotonic() + START_TIMEOUT
        while not any(n.port == port and not n.failed for n in self.nodes()):
            if time.monotonic() > deadline:
                raise TopologyError(f"the node on port {port} did not rejoin")
            time.sleep(0.1)
        self.wait_healthy()

    def reshard(self, slots: int) -> tuple[int, int]:
        """Move ``slots`` slots from one primary to another (``redis-cli --cluster
        reshard``); the ports (from, to)."""
        source, target = self.primaries()[:2]
        self._run_cli(
            "--cluster", "reshard", f"127.0.0.1:{target.port}",
            "--cluster-from", source.node_id, "--cluster-to", target.node_id,
            "--cluster-slots", str(slots), "--cluster-yes",
            timeout=300.0,
        )  # fmt: skip
        return source.port, target.port
