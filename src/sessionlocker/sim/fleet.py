"""Server processes: start one, send it commands, freeze, kill and restart it."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionlocker.sim.world import Timings

__all__ = ["ServerConfig", "WorkerProcess"]


@dataclass(frozen=True)
class ServerConfig:
    """How every server of a run is started."""

    store: str
    directory: Path
    timings: Timings
    fault_rate: float = 0.0


@dataclass
class WorkerProcess:
    """A running ``python -m sessionlocker.sim.worker``; restarted under the same name."""

    name: str
    session: str
    history_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    paused_until: float | None = None

    @classmethod
    def start(
        cls, name: str, config: ServerConfig, *, seed: int, skew: tuple[float, float]
    ) -> WorkerProcess:
        """Start server ``name`` (a new session each time); it appends to its history."""
        session = f"sim-{name}-{uuid.uuid4().hex[:8]}"
        history_path = config.directory / f"server-{name}.jsonl"
        log_path = config.directory / f"server-{name}.log"
        command = [
            sys.executable,
            "-m",
            "sessionlocker.sim.worker",
            f"--store={config.store}",
            f"--name={name}",
            f"--session={session}",
            f"--history={history_path}",
            f"--seed={seed}",
            f"--fault-rate={config.fault_rate}",
            f"--skew-offset={skew[0]}",
            f"--skew-rate={skew[1]}",
            f"--lease={config.timings.lease}",
            f"--autosave={config.timings.autosave}",
            f"--poll={config.timings.poll}",
            f"--force-timeout={config.timings.force_timeout}",
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
            )
        return cls(name, session, history_path, log_path, process)

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def send(self, command: dict[str, Any]) -> bool:
        """Write one command line to the server; False when it is gone."""
        stdin = self.process.stdin
        if stdin is None or not self.running:
            return False
        try:
            stdin.write(json.dumps(command).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def pause(self, until: float) -> None:
        """Freeze the process (SIGSTOP) until ``resume``."""
        if self.running:
            self.process.send_signal(signal.SIGSTOP)
            self.paused_until = until

    def resume(self) -> None:
        """Let a frozen process run again (SIGCONT)."""
        if self.running:
            self.process.send_signal(signal.SIGCONT)
        self.paused_until = None

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.paused_until = None
        self._close_stdin()

    def stop(self, timeout: float) -> int:
        """Ask the server to release everything and exit (SIGTERM); kill it after ``timeout``."""
        if self.paused_until is not None:
            self.resume()
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.wait()
        self._close_stdin()
        return code

    def _close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):  # the pipe broke with the process
                self.process.stdin.close()

    def log_tail(self, lines: int = 5) -> str:
        """The last lines the server printed (its errors, if it failed)."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])
