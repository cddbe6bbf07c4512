"""Throwaway Redis and PostgreSQL servers for a benchmark run, in temporary folders.

Each listens on 127.0.0.1 only, keeps its data in a fresh temporary folder, runs with
the server's default durability settings (PostgreSQL: fsync and synchronous commit on;
Redis: no persistence, as a cache-like session store usually runs), and is stopped and
its folder removed by ``stop()``. PostgreSQL refuses to run as root, so as root its
commands run as the ``postgres`` user (``runuser -u postgres --``).
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

__all__ = ["PostgresServer", "RedisServer", "ServerUnavailable"]

_START_TIMEOUT = 30.0


class ServerUnavailable(Exception):
    """The server's programs are missing or it would not start; the message says why."""


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerUnavailable(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise ServerUnavailable(f"{what} did not listen on port {port} within {_START_TIMEOUT} s")


class RedisServer:
    """``redis-server`` on ``port``, without persistence."""

    def __init__(self, port: int = 56379) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable("redis-server is not on the PATH")
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="sessionlocker-bench-redis-"))
        self._log = (self.folder / "redis.log").open("wb")
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, self.process, "redis-server")
        except ServerUnavailable:
            self.stop()
            raise
        self.url = f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if not candidates:
        raise ServerUnavailable(f"PostgreSQL's {name} was not found")
    return str(candidates[0])


class PostgresServer:
    """A PostgreSQL cluster made by ``initdb`` and run by ``pg_ctl`` on ``port``."""

    def __init__(self, port: int = 55433) -> None:
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="sessionlocker-bench-pg-"))
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        log = self.folder / "postgres.log"
        options = f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1"
        # pg_stat_statements lets the round-trip benchmark count statements on the wire.
        counting = (Path(_postgres_bin("postgres")).resolve().parent.parent / "lib").glob(
            "pg_stat_statements.*"
        )
        if any(counting):
            options += " -c shared_preload_libraries=pg_stat_statements"
        try:
            self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                      "-A", "trust", "--no-sync")  # fmt: skip
            self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(log),
                      "-o", options, "-w", "start")  # fmt: skip
            _wait_for_port(port, None, "PostgreSQL")
            if "pg_stat_statements" in options:
                create = "CREATE EXTENSION pg_stat_statements"
                self._run(_postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(port),
                          "-U", "postgres", "-c", create)  # fmt: skip
        except (ServerUnavailable, subprocess.CalledProcessError) as exc:
            self.stop()
            raise ServerUnavailable(f"PostgreSQL would not start: {exc}") from exc
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run(
            [*prefix, *command], check=True, capture_output=True, cwd=self.folder, timeout=120
        )

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and remove its folder."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        if pid_file.exists():  # pg_ctl failed: end the postmaster by its pid
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
        shutil.rmtree(self.folder, ignore_errors=True)
