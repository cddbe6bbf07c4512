"""A worker's history: one JSON object per line, flushed as soon as it is written.

A worker writes a line when it starts, when it loads a key (with the lock's epoch),
when a change is confirmed saved (``when_saved`` answered True), when a locker ends,
and when it is done. The parent reads the files after the run; a line cut short by a
SIGKILL is skipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Confirmed", "History", "HistoryWriter", "Loaded", "read_history"]


class HistoryWriter:
    """Appends events of one worker to ``path``."""

    def __init__(self, path: Path, worker: str) -> None:
        self.worker = worker
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        """Write one event line, stamped with the wall-clock time, and flush it."""
        line = {"event": event, "worker": self.worker, "t": time.time(), **fields}
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


@dataclass(frozen=True)
class Confirmed:
    """Increment ``n`` of ``key`` by ``worker`` is in a committed write."""

    worker: str
    key: str
    n: int
    t: float


@dataclass(frozen=True)
class Loaded:
    """``worker`` took the lock of ``key`` in ``epoch`` at wall time ``t``."""

    worker: str
    key: str
    epoch: int
    t: float


@dataclass
class History:
    """What one worker's history file says."""

    started: float | None = None
    confirmed: list[Confirmed] = field(default_factory=list)
    loaded: list[Loaded] = field(default_factory=list)
    ended: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    done: dict[str, Any] | None = None


def read_history(path: Path) -> History:
    """Parse a history file; a missing file is an empty history."""
    history = History()
    if not path.exists():
        return history
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the last line of a killed worker may be cut short
        if isinstance(event, dict):
            _add(history, event)
    return history


def _add(history: History, event: dict[str, Any]) -> None:
    kind = event.get("event")
    worker, t = str(event.get("worker")), float(event.get("t", 0.0))
    if kind == "start":
        history.started = t
    elif kind == "confirmed":
        history.confirmed.append(Confirmed(worker, str(event["key"]), int(event["n"]), t))
    elif kind == "loaded":
        history.loaded.append(Loaded(worker, str(event["key"]), int(event["epoch"]), t))
    elif kind == "ended":
        how = str(event.get("how"))
        history.ended[how] = history.ended.get(how, 0) + 1
        if how == "failed":
            history.failures.append(f"{event.get('key')}: {event.get('error')}")
    elif kind == "done":
        history.done = event
