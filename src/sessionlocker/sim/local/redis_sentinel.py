"""A throwaway Redis primary with replicas behind three Sentinels, on loopback.

``RedisSentinelTopology(workdir, replicas=1)``, once ``start()``ed, runs one
``redis-server`` primary, ``replicas`` replicas of it and three ``redis-sentinel``
processes (quorum 2) that monitor it as the service ``sessionlocker``, each on a free
port of 127.0.0.1 with its files under ``workdir``. ``url`` is the store URL
(``redis+sentinel://``, with ``replicas=1``: every committed write waits for one
replica). ``fail_primary()`` SIGKILLs the primary the sentinels name now and returns; a
thread waits until the sentinels name another one, then starts the killed node again on
its port and data, as a primary (as a crashed machine that reboots would): it claims to
be a primary until the sentinels turn it into a replica of the new one
(``wait_recovered()`` waits for that thread). ``close()`` stops everything and removes
the files.

The nodes keep an append-only file fsynced on every write (``appendfsync always``), so a
killed node comes back with what it acknowledged. The sentinels judge a node down after
``DOWN_AFTER`` seconds of silence.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from sessionlocker.errors import SessionLockerError

__all__ = ["LocalTopologyError", "RedisSentinelTopology"]

#: The sentinels' service name (the URL's path).
SERVICE = "sessionlocker"
#: Seconds of silence after which a sentinel thinks a node is down.
DOWN_AFTER = 1.0
#: Seconds a failover may take before the sentinels try again.
FAILOVER_TIMEOUT = 5.0
#: Seconds to wait for a node, a sentinel or a promotion.
WAIT = 60.0


class LocalTopologyError(SessionLockerError):
    """The servers could not be found, started or failed over; the message says why."""


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin")
    if found is None:
        raise LocalTopologyError(f"{name} is not installed (Debian: apt-get install {name})")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Reply = list["Reply"] | str | int | None


def command(port: int, *args: str, timeout: float = 2.0) -> Reply:
    """Send one command to 127.0.0.1:``port`` in RESP and return its reply, decoded
    (an error reply raises ``LocalTopologyError``). Enough for ROLE, PING, INFO and
    SENTINEL without a client library."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload.encode())
        reader = sock.makefile("rb")
        return _reply(reader)


def _reply(reader: IO[bytes]) -> Reply:
    line = reader.readline()
    if not line:
        raise LocalTopologyError("the server closed the connection")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise LocalTopologyError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = reader.read(int(rest) + 2)
        return str(data[:-2].decode(errors="replace"))
    if kind == b"*":
        if int(rest) < 0:
            return None
        return [_reply(reader) for _ in range(int(rest))]
    raise LocalTopologyError(f"unexpected reply {line!r}")


def role(port: int) -> str | None:
    """``master`` or ``slave`` as the node at ``port`` says now; None if it does not answer."""
    try:
        reply = command(port, "ROLE")
    except (OSError, LocalTopologyError):
        return None
    return str(reply[0]) if isinstance(reply, list) and reply else None


@dataclass
class Process:
    """One server process: how to start it again, its port, its files."""

    name: str
    port: int
    directory: Path
    argv: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalTopologyError(f"{self.name} exited while starting; see {self.log}")
            with contextlib.suppress(OSError, LocalTopologyError):
                if command(self.port, "PING") == "PONG":
                    return
            time.sleep(0.05)
        raise LocalTopologyError(f"{self.name} did not answer on port {self.port}")

    def kill(self) -> None:
        """SIGKILL (a crash) and wait for the process to be gone."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisSentinelTopology:
    """A primary, ``replicas`` replicas and three sentinels (see the module's text)."""

    def __init__(self, workdir: Path, *, replicas: int = 1) -> None:
        if replicas < 1:
            raise LocalTopologyError("a Sentinel topology needs at least one replica")
        self.workdir = Path(workdir)
        self.replicas = replicas
        self.nodes: list[Process] = []
        self.sentinels: list[Process] = []
        self._recovery: threading.Thread | None = None
        self._recovery_error: LocalTopologyError | None = None

    def start(self) -> None:
        """Start the nodes and the sentinels; wait until the sentinels see every node."""
        server, sentinel = _binary("redis-server"), _binary("redis-sentinel")
        try:
            self._start_nodes(server)
            self._start_sentinels(sentinel)
            self._wait_watched()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # Addresses.

    @property
    def sentinel_ports(self) -> list[int]:
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def base_url(self) -> str:
        """The ``redis+sentinel://`` URL of the service, without options."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    @property
    def url(self) -> str:
        """The store URL: ``base_url`` with ``replicas=1`` (a committed write waits for
        one replica's acknowledgement)."""
        return f"{self.base_url}?replicas=1&replica_timeout=1"

    def primary_port(self) -> int | None:
        """The port of the primary that a majority of the sentinels name now."""
        named: dict[int, int] = {}
        for port in self.sentinel_ports:
            with contextlib.suppress(OSError, LocalTopologyError):
                reply = command(port, "SENTINEL", "get-master-addr-by-name", SERVICE)
                if isinstance(reply, list) and len(reply) == 2:
                    named[int(str(reply[1]))] = named.get(int(str(reply[1])), 0) + 1
        for port, votes in named.items():
            if votes >= 2:
                return port
        return None

    def node(self, port: int) -> Process:
        return next(node for node in self.nodes if node.port == port)

    # Failures.

    def kill_primary(self) -> Process:
        """SIGKILL the node the sentinels name as primary now; that node."""
        port = self.primary_port()
        if port is None:
            raise LocalTopologyError("the sentinels name no primary")
        victim = self.node(port)
        victim.kill()
        return victim

    def wait_promoted(self, old: int) -> int:
        """Wait until the sentinels name a primary other than ``old`` that says it is
        one; its port."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port is not None and port != old and role(port) == "master":
                return port
            time.sleep(0.05)
        raise LocalTopologyError(f"no replica was promoted within {WAIT:g} s")

    def fail_primary(self) -> None:
        """SIGKILL the primary; a thread waits for the promotion of a replica, then
        starts the killed node again as a primary, for the sentinels to demote."""
        self.wait_recovered()
        victim = self.kill_primary()
        self._recovery = threading.Thread(target=self._recover, args=(victim,), daemon=True)
        self._recovery.start()

    def _recover(self, victim: Process) -> None:
        try:
            self.wait_promoted(victim.port)
            victim.start()
        except LocalTopologyError as exc:
            self._recovery_error = exc

    def wait_recovered(self) -> None:
        """Wait until the last ``fail_primary`` saw the promotion and restarted the node."""
        if self._recovery is not None:
            self._recovery.join()
            self._recovery = None
        error, self._recovery_error = self._recovery_error, None
        if error is not None:
            raise error

    def wait_replicas(self, count: int | None = None) -> None:
        """Wait until the primary has ``count`` (default: every other node) replicas
        online and caught up enough to be listed as connected."""
        wanted = len(self.nodes) - 1 if count is None else count
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port is not None and _connected_replicas(port) >= wanted:
                return
            time.sleep(0.1)
        raise LocalTopologyError(f"the primary did not get {wanted} replicas within {WAIT:g} s")

    def close(self) -> None:
        """Stop every process and remove the files. Idempotent."""
        if self._recovery is not None:
            self._recovery.join()
            self._recovery = None
        for process in [*self.sentinels, *self.nodes]:
            process.stop()
        shutil.rmtree(self.workdir / "redis-sentinel", ignore_errors=True)

    # Start-up.

    def _directory(self, name: str) -> Path:
        directory = self.workdir / "redis-sentinel" / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _start_nodes(self, server: str) -> None:
        for index in range(1 + self.replicas):
            name = f"node{index}"
            port, directory = _free_port(), self._directory(name)
            argv = [
                server,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--logfile", f"{name}.log",
                "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
            node = Process(name, port, directory, argv)
            self.nodes.append(node)
            if index > 0:  # only this first start: a restarted node claims to be a primary
                node.argv = [*argv, "--replicaof", "127.0.0.1", str(self.nodes[0].port)]
            node.start()
            node.argv = argv

    def _start_sentinels(self, sentinel: str) -> None:
        primary = self.nodes[0].port
        for index in range(3):
            name = f"sentinel{index}"
            port, directory = _free_port(), self._directory(name)
            config = directory / "sentinel.conf"
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {directory}\n"
                f"logfile {name}.log\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {int(DOWN_AFTER * 1000)}\n"
                f"sentinel failover-timeout {SERVICE} {int(FAILOVER_TIMEOUT * 1000)}\n"
                f"sentinel parallel-syncs {SERVICE} {self.replicas}\n"
            )
            process = Process(name, port, directory, [sentinel, str(config)])
            self.sentinels.append(process)
            process.start()

    def _wait_watched(self) -> None:
        """Wait until every sentinel sees the two others and every replica."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if all(self._sentinel_ready(port) for port in self.sentinel_ports):
                self.wait_replicas()
                return
            time.sleep(0.1)
        raise LocalTopologyError(f"the sentinels did not see each other within {WAIT:g} s")

    def _sentinel_ready(self, port: int) -> bool:
        try:
            reply = command(port, "SENTINEL", "master", SERVICE)
        except (OSError, LocalTopologyError):
            return False
        if not isinstance(reply, list):
            return False
        fields = dict(zip(reply[::2], reply[1::2], strict=False))
        return (
            str(fields.get("num-other-sentinels")) == "2"
            and str(fields.get("num-slaves")) == str(self.replicas)
            and str(fields.get("flags")) == "master"
        )


def _connected_replicas(port: int) -> int:
    try:
        reply = command(port, "INFO", "replication")
    except (OSError, LocalTopologyError):
        return 0
    lines = str(reply).splitlines()
    return sum(1 for line in lines if line.startswith("slave") and "state=online" in line)
