"""Helpers for testing code that uses sessionlocker (and for our own tests).

``ManualExecutor`` runs no store call until told to: a test decides which request
completes next, or lets one commit and then drops its reply (a crash after the write,
before the acknowledgement), so races and crashes are replayed exactly.

``seed`` writes test records straight into a store (SessionLocker's DataStoreTestData),
at any data version, so migrations and loads can be tried on known data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sessionlocker.core.record import Record, encode
from sessionlocker.core.spec import Spec, check_key
from sessionlocker.core.storable import encode_data
from sessionlocker.stores.base import Store

__all__ = ["ManualExecutor", "seed"]


def seed(
    store: Store, spec: Spec, records: Mapping[str, Any], *, version: int | None = None
) -> None:
    """Write each ``key: data`` as a new, unlocked record of ``spec`` at ``version``.

    ``version`` defaults to the spec's own; an older one makes records for migrations
    to upgrade. Existing keys raise ``Conflict``: seeding never overwrites.
    """
    at = spec.version if version is None else version
    for key, data in records.items():
        record = Record(data=None, schema=at, patch=0, compatible=at)
        store.write(spec.store_key(check_key(key)), encode(record, encode_data(data)), None)


@dataclass(slots=True)
class _Call:
    call: Callable[[], object]
    done: Callable[[object], None]


class ManualExecutor:
    """Holds submitted calls until ``run_next``, ``run_all`` or ``drop_next``."""

    def __init__(self) -> None:
        self._calls: list[_Call] = []
        self.dropped = 0

    def submit(self, call: Callable[[], object], done: Callable[[object], None]) -> None:
        self._calls.append(_Call(call, done))

    def shutdown(self) -> None:
        self.run_all()

    @property
    def pending(self) -> int:
        """How many calls wait to be run."""
        return len(self._calls)

    def run_next(self, index: int = 0) -> object:
        """Run the call at ``index`` (oldest first) and deliver its result."""
        entry = self._calls.pop(index)
        result = entry.call()
        entry.done(result)
        return result

    def run_all(self) -> None:
        """Run every waiting call, including any submitted meanwhile, in order."""
        while self._calls:
            self.run_next()

    def drop_next(self, *, execute: bool, index: int = 0) -> None:
        """Never deliver the call at ``index``; run it first when ``execute`` (reply lost)."""
        entry = self._calls.pop(index)
        if execute:
            entry.call()
        self.dropped += 1
