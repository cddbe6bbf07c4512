"""Worker processes: start one, kill it, stop it, and never leave one behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from sessionlocker.sim.history import History, read_history
from sessionlocker.sim.world import Timings

__all__ = ["WorkerProcess"]


@dataclass
class WorkerProcess:
    """A running ``python -m sessionlocker.sim.worker`` and the files it writes."""

    name: str
    session: str
    history_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls, name: str, *, db: Path, directory: Path, players: int, seed: int, timings: Timings
    ) -> WorkerProcess:
        """Start worker ``name`` on the database ``db``; its files go in ``directory``."""
        session = f"sim-{name}-{uuid.uuid4().hex[:8]}"
        history_path = directory / f"worker-{name}.jsonl"
        log_path = directory / f"worker-{name}.log"
        command = [
            sys.executable,
            "-m",
            "sessionlocker.sim.worker",
            f"--db={db}",
            f"--name={name}",
            f"--session={session}",
            f"--history={history_path}",
            f"--players={players}",
            f"--seed={seed}",
            *timings.arguments(),
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return cls(name, session, history_path, log_path, process)

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def history(self) -> History:
        """What the worker has written to its history so far."""
        return read_history(self.history_path)

    def kill(self) -> None:
        """SIGKILL the worker and wait until it is gone."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float) -> int:
        """Ask the worker to release everything and exit (SIGTERM); kill it after ``timeout``."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 5) -> str:
        """The last lines the worker printed (its errors, if it failed)."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])
