"""Real database servers for the tests: ``redis-server`` and PostgreSQL on loopback.

Each server lives in its own temporary directory, listens on 127.0.0.1 on a free
port, and is stopped (and its directory removed) by ``cleanup()``. ``restart()`` stops
it (hard: SIGKILL or an immediate shutdown, as in a crash) and starts it again on the
same data directory and port, so a test can check what survives.

PostgreSQL refuses to run as root, so when the tests run as root its commands run as the
unprivileged ``postgres`` user (``runuser -u postgres --``) and the directory is handed
to that user. When a binary is missing, ``install_package`` tries ``apt-get install``
once (only as root, only where ``apt-get`` exists).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sessionlocker.sim.local.postgres_standby import find_postgres_bin
from sessionlocker.sim.local.redis_sentinel import LocalTopologyError, RedisSentinelTopology

__all__ = [
    "ClusterServer",
    "PostgresServer",
    "RedisServer",
    "SentinelServers",
    "ServerError",
    "find_postgres_bin",
    "install_package",
]

_START_TIMEOUT = 30.0
_attempted_installs: dict[str, bool] = {}


class ServerError(Exception):
    """A test server could not be installed, started or stopped; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def install_package(package: str) -> bool:
    """Try ``apt-get install -y package`` once per run; True when it succeeded."""
    if package in _attempted_installs:
        return _attempted_installs[package]
    ok = False
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "-q", package]
        print(f"servers: {package} is missing; running {' '.join(command)}", flush=True)
        ok = subprocess.run(command, env=env, capture_output=True, check=False).returncode == 0
        if not ok:  # the package lists may be empty in a fresh container
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            result = subprocess.run(command, env=env, capture_output=True, check=False)
            ok = result.returncode == 0
    _attempted_installs[package] = ok
    return ok


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_for_port(port: int, alive: object, log: Path, what: str) -> None:
    """Wait until ``port`` accepts connections; ``alive()`` false means the server died."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise ServerError(f"{what} exited while starting; log:\n{_tail(log)}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise ServerError(f"{what} did not listen on port {port} within {_START_TIMEOUT:g} s")


class RedisServer:
    """A ``redis-server`` with append-only persistence (``appendfsync always``).

    Every acknowledged write is in the AOF file before the reply, so a SIGKILL and
    restart keeps it; RDB snapshots are off (``--save ""``).
    """

    def __init__(self, *extra_args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None and install_package("redis-server"):
            binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is not installed and could not be installed")
        self.binary = binary
        self.extra_args = extra_args
        self.directory = Path(tempfile.mkdtemp(prefix="sessionlocker-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0, without options."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--logfile", str(self.log),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        process = self.process
        _wait_for_port(self.port, lambda: process.poll() is None, self.log, "redis-server")
        self._wait_ready()

    def _wait_ready(self) -> None:
        # Listening is not enough: while loading the AOF the server answers LOADING.
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(64).startswith((b"+PONG", b"-NOAUTH")):  # NOAUTH: it has a password
                    return
            time.sleep(0.02)
        raise ServerError("redis-server did not answer PING")

    def stop(self, *, hard: bool = False) -> None:
        """Stop the server: SIGTERM and wait, or SIGKILL when ``hard`` (a crash)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, *, hard: bool = True) -> None:
        """Stop (a crash when ``hard``) and start again on the same directory and port."""
        self.stop(hard=hard)
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(ProcessLookupError):
            self.resume()
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL cluster with trust authentication on 127.0.0.1.

    The database ``sessionlocker_test`` is created at the first start. The unix socket
    lives in the temporary directory, so nothing is shared with a system server.
    """

    database = "sessionlocker_test"

    def __init__(self) -> None:
        bindir = find_postgres_bin()
        if bindir is None and install_package("postgresql"):
            bindir = find_postgres_bin()
        if bindir is None:
            raise ServerError("PostgreSQL (initdb, pg_ctl) is not installed and could not be")
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("runuser") is None:
            raise ServerError("running as root, but runuser is missing to run PostgreSQL")
        self.directory = Path(tempfile.mkdtemp(prefix="sessionlocker-pg-"))
        if self.as_root:
            try:
                shutil.chown(self.directory, user="postgres", group="postgres")
            except (LookupError, PermissionError) as exc:
                self.cleanup()
                raise ServerError(
                    f"cannot hand the data directory to user postgres: {exc}"
                ) from exc
        self.port = free_port()
        self.running = False
        self.paused = False
        self._initialised = False

    @property
    def url(self) -> str:
        """The URL of the test database, without options."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        program = [str(self.bindir / command[0]), *command[1:]]
        if self.as_root:
            program = ["runuser", "-u", "postgres", "--", *program]
        result = subprocess.run(
            program, capture_output=True, text=True, check=False, cwd=self.directory
        )
        if check and result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-2000:]
            raise ServerError(f"{command[0]} failed ({result.returncode}): {output}")
        return result

    def start(self) -> None:
        """Create the cluster on first use, start it and wait until it accepts queries."""
        if not self._initialised:
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"  # a process crash still loses nothing
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", str(int(_START_TIMEOUT)), "start")  # fmt: skip
        self.running = True
        if not self._initialised:
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                      self.database)  # fmt: skip
            self._initialised = True

    def stop(self, *, hard: bool = False) -> None:
        """Stop the server: a fast shutdown, or an immediate one (a crash) when ``hard``."""
        if not self.running:
            return
        mode = "immediate" if hard else "fast"
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
        self.running = False

    def restart(self, *, hard: bool = True) -> None:
        """Stop (a crash when ``hard``) and start again on the same directory and port."""
        self.stop(hard=hard)
        self.start()

    def processes(self) -> list[int]:
        """The postmaster's pid, then its children's (the backends and helpers)."""
        main = int((self.data / "postmaster.pid").read_text().split()[0])
        return [main, *_children(main)]

    def pause(self) -> None:
        """SIGSTOP the postmaster, then its children: connections stay open, nothing
        answers (the kernel still ACKs and answers keepalives)."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        for pid in reversed(self.processes()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused = False

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        if self.paused:
            self.resume()
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _children(parent: int) -> list[int]:
    """The pids whose parent is ``parent`` (from ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


class ClusterServer:
    """A 6-node Redis Cluster (3 primaries, 3 replicas; ``replicas=2``: 6) of
    ``sessionlocker.sim.local``:
    the tests use the same start-up code as ``sessionlocker simulate --start``."""

    def __init__(self, replicas: int = 1) -> None:
        from sessionlocker.sim.local.redis_cluster import (  # noqa: PLC0415 (installed code)
            RedisClusterTopology,
            TopologyError,
        )

        if shutil.which("redis-server") is None:
            install_package("redis-server")
        self.directory = Path(tempfile.mkdtemp(prefix="sessionlocker-cluster-"))
        try:
            self.topology = RedisClusterTopology(self.directory / "cluster", replicas=replicas)
            self.topology.start()
        except TopologyError as exc:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise ServerError(str(exc)) from None
        self.port = self.topology.ports[0]

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL naming every node, without options."""
        return self.topology.url

    def cleanup(self) -> None:
        self.topology.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class SentinelServers:
    """A Redis primary with ``replicas`` replicas behind three sentinels, on loopback
    (``sessionlocker.sim.local.redis_sentinel``, the topology ``simulate --start`` runs),
    in a temporary directory of its own; ``cleanup()`` stops it and removes the files."""

    def __init__(self, replicas: int = 1) -> None:
        for binary in ("redis-server", "redis-sentinel"):
            if shutil.which(binary) is None:
                install_package(binary)
        self.directory = Path(tempfile.mkdtemp(prefix="sessionlocker-sentinel-"))
        self.topology = RedisSentinelTopology(self.directory, replicas=replicas)
        try:
            self.topology.start()
        except LocalTopologyError as exc:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise ServerError(str(exc)) from exc

    @property
    def url(self) -> str:
        """The store URL: the sentinels and the service, with ``replicas=1``."""
        return self.topology.url

    @property
    def port(self) -> int:
        """The first sentinel's port."""
        return self.topology.sentinel_ports[0]

    def start(self) -> None:
        """Already running once made (``_Servers`` calls it)."""

    def cleanup(self) -> None:
        self.topology.close()
        shutil.rmtree(self.directory, ignore_errors=True)
