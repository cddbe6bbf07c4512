"""``PostgresStandby``: a throwaway PostgreSQL primary and streaming standby on loopback.

The primary is a fresh ``initdb`` cluster with a database ``sessionlocker``; the
standby is a ``pg_basebackup -R`` copy of it that streams its WAL. With
``synchronous=True`` (the default) the primary runs with
``synchronous_standby_names = '*'`` and ``synchronous_commit = on``, so a commit is
acknowledged only once the standby has it on disk; with ``synchronous=False`` the
replication is asynchronous (PostgreSQL's default), and an acknowledged commit can be
missing on the promoted standby.

The synchronous settings are set on the primary (``ALTER SYSTEM``) after the standby
was copied from it, so the copy does not have them: the promoted standby must not wait
for a standby of its own that does not exist.

``url`` names both hosts (``127.0.0.1:P1,127.0.0.1:P2``) with
``target_session_attrs=read-write``, so a client reaches whichever is the primary.
``fail_primary()`` SIGKILLs the primary's processes and promotes the standby
(``pg_ctl promote``). ``stop_standby()`` stops the standby, which leaves every commit
on a synchronous primary waiting for it.

PostgreSQL refuses to run as root: then its commands run as the ``postgres`` user
(``runuser -u postgres --``) in a directory of the system's temporary folder handed to
that user (a caller's folder may not be reachable by it). The binaries are found on
``PATH`` or in Debian's ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from sessionlocker.errors import SessionLockerError

__all__ = ["PostgresAsyncStandby", "PostgresStandby", "TopologyError", "find_postgres_bin"]

_START_TIMEOUT = 60
DATABASE = "sessionlocker"


class TopologyError(SessionLockerError):
    """A throwaway server topology could not be started or failed over; the message says why."""


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's)."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresStandby:
    """A primary and a streaming standby (see the module doc); a context manager.

    ``start()`` (or ``with``) brings both up and waits until the standby streams;
    ``close()`` stops both and removes their directory.
    """

    def __init__(self, workdir: Path | None = None, *, synchronous: bool = True) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise TopologyError("PostgreSQL (initdb, pg_ctl, pg_basebackup) is not installed")
        self.bindir = bindir
        self.synchronous = synchronous
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("runuser") is None:
            raise TopologyError("running as root, but runuser is missing to run PostgreSQL")
        parent = None if self.as_root or workdir is None else workdir
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="sessionlocker-pg-standby-", dir=parent))
        if self.as_root:
            shutil.chown(self.directory, user="postgres", group="postgres")
        self.ports = (_free_port(), _free_port())
        #: Which of the two nodes (0 or 1) is the primary now.
        self.primary = 0
        self._running = [False, False]

    def __enter__(self) -> PostgresStandby:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
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
        """Both hosts, the primary wanted: ``postgresql://postgres@h1:p1,h2:p2/sessionlocker?...``."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def node_url(self, node: int) -> str:
        """The URL of one node alone (0: the first primary, 1: the first standby)."""
        return f"postgresql://postgres@127.0.0.1:{self.ports[node]}/{DATABASE}"

    def data(self, node: int) -> Path:
        return self.directory / f"node{node}"

    def log(self, node: int) -> Path:
        return self.directory / f"node{node}.log"

    # Start-up.

    def start(self) -> None:
        """Make the primary, copy it into the standby, start both; wait until it streams."""
        self._run(
            "initdb", "-D", str(self.data(0)), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        self._start_node(0)
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.ports[0]), "-U", "postgres",
                  DATABASE)  # fmt: skip
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.ports[0]), "-U", "postgres",
            "-D", str(self.data(1)), "-R", "-X", "stream", "--no-sync", "-c", "fast",
        )  # fmt: skip
        if self.synchronous:
            self._make_synchronous()
        self._start_node(1)
        self._wait_streaming()

    def _options(self, node: int) -> str:
        return (
            f"-p {self.ports[node]} -k {self.directory} -c listen_addresses=127.0.0.1 "
            f"-c fsync=off -c cluster_name=node{node}"
        )

    def _start_node(self, node: int) -> None:
        self._run("pg_ctl", "-D", str(self.data(node)), "-l", str(self.log(node)),
                  "-o", self._options(node), "-w",
                  "-t", str(_START_TIMEOUT), "start")  # fmt: skip
        self._running[node] = True

    def _make_synchronous(self) -> None:
        """Make the primary's commits wait for the standby (in its own configuration only:
        the standby's copy was taken before, so once promoted it waits for nobody)."""
        for statement in (
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "ALTER SYSTEM SET synchronous_commit = 'on'",
            "SELECT pg_reload_conf()",
        ):
            self._psql(0, statement, check=True)

    def _wait_streaming(self) -> None:
        """Wait until the primary sees its standby streaming (and, if so, synchronous)."""
        wanted = "sync" if self.synchronous else "async"
        query = f"SELECT count(*) FROM pg_stat_replication WHERE sync_state = '{wanted}'"
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._psql(self.primary, query).strip() == "1":
                return
            time.sleep(0.1)
        raise TopologyError(f"the standby did not start streaming: {self._tail(1)}")

    # Failures.

    def fail_primary(self) -> None:
        """SIGKILL every process of the primary, then promote the standby (``pg_ctl promote``).

        Only once: after it there is one node, the new primary, with no standby.
        """
        if self.primary != 0:
            raise TopologyError("the primary has already been failed over")
        self.kill(0)
        self._run("pg_ctl", "-D", str(self.data(1)), "-w", "-t", str(_START_TIMEOUT), "promote")
        self.primary = 1

    def kill(self, node: int) -> None:
        """SIGKILL the postmaster of ``node`` and all its children (a crashed machine)."""
        pid_file = self.data(node) / "postmaster.pid"
        if not self._running[node] or not pid_file.exists():
            return
        main = int(pid_file.read_text().split()[0])
        for pid in [main, *_children(main)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._running[node] = False

    def stop_standby(self) -> None:
        """Stop the standby (fast shutdown): a synchronous primary's commits wait for it."""
        self._stop(1)

    def start_standby(self) -> None:
        """Start the standby again after ``stop_standby``."""
        self._start_node(1)

    def _stop(self, node: int) -> None:
        if self._running[node]:
            self._run("pg_ctl", "-D", str(self.data(node)), "-m", "fast", "-w", "stop",
                      check=False)  # fmt: skip
            self._running[node] = False

    def close(self) -> None:
        """Stop both nodes and remove the directory. Idempotent."""
        for node in (0, 1):
            if self._running[node]:
                self._run("pg_ctl", "-D", str(self.data(node)), "-m", "immediate", "-w",
                          "stop", check=False)  # fmt: skip
                self._running[node] = False
        shutil.rmtree(self.directory, ignore_errors=True)

    # Commands.

    def _psql(self, node: int, query: str, *, check: bool = False) -> str:
        result = self._run("psql", "-h", "127.0.0.1", "-p", str(self.ports[node]), "-U",
                           "postgres", "-d", DATABASE, "-At", "-c", query, check=check)  # fmt: skip
        return result.stdout

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        program = [str(self.bindir / command[0]), *command[1:]]
        if self.as_root:
            program = ["runuser", "-u", "postgres", "--", *program]
        result = subprocess.run(
            program, capture_output=True, text=True, check=False, cwd=self.directory
        )
        if check and result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-2000:]
            raise TopologyError(f"{command[0]} failed ({result.returncode}): {output}")
        return result

    def _tail(self, node: int, lines: int = 15) -> str:
        try:
            return "\n".join(self.log(node).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class PostgresAsyncStandby(PostgresStandby):
    """``PostgresStandby`` with asynchronous replication (PostgreSQL's default): a save
    acknowledged just before the primary dies may be missing on the promoted standby."""

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir, synchronous=False)


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
