"""A server's history: one JSON object per line, flushed as soon as it is written.

A server writes a line when it starts; what it observed (``loaded``: a key's lock epoch
and the count and items it read; ``ended``: how a locker ended); what it acknowledged
(``confirmed``: a play change whose save committed, with its epoch; ``granted``: a
purchase answered ``granted``; ``offered``: a trade offer committed with the items put in
escrow); the faults injected so far (``faults``); and ``done`` when it stopped. The
parent writes its own history (``parent.jsonl``: hops, crashes, pauses, admin sends).
The checker reads only these files and the final store; a line cut short by a SIGKILL
is skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Event", "HistoryWriter", "Tail", "read_events"]

#: One history line.
Event = dict[str, Any]


class HistoryWriter:
    """Appends events of one process to ``path``."""

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


def read_events(path: Path) -> list[Event]:
    """Parse a history file; a missing file is an empty history."""
    events: list[Event] = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the last line of a killed server may be cut short
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


class Tail:
    """Reads the lines added to a history file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_events(self) -> list[Event]:
        """The complete lines written since the last call, parsed."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events: list[Event] = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
        return events
