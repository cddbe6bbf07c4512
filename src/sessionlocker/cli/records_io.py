"""Reading records and opening sessions for the admin commands.

Reads are plain store reads, decoded. Every change goes through a ``LockerService``
session, the path a game server uses: the admin tool takes the lock like any other
session (a short lease of its own), so a live holder is never overwritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sessionlocker.cli.options import CommandError, admin_spec, empty_namespace, store_key
from sessionlocker.core.locker import Locker
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.protocol import Versioned
from sessionlocker.core.record import Lock, Record, decode
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import CorruptRecord
from sessionlocker.stores.base import Store

__all__ = ["Stored", "admin_session", "decode_stored", "holder_state", "lock_json", "read_record"]

#: ``force`` from the admin tool never takes a live holder's lock by timeout: it waits
#: (up to the command's ``--timeout``) for the holder to save and release.
NEVER = 365 * 24 * 3600.0


@dataclass(frozen=True)
class Stored:
    """A record as stored: its bytes and revision, decoded."""

    key: str
    versioned: Versioned
    record: Record


def read_record(store: Store, args: argparse.Namespace, key: str) -> Stored:
    """The record ``key`` of ``--namespace``; ``CommandError`` (exit 1) if absent or corrupt."""
    versioned = store.read(store_key(args, key))
    if versioned is None:
        hint = empty_namespace(store, args)
        raise CommandError(f"no record {key!r} in namespace {args.namespace!r}" + _then(hint))
    return Stored(key, versioned, decode_stored(key, versioned.value))


def decode_stored(key: str, value: bytes) -> Record:
    """The record in ``value``: every command decodes through here (the strict decoder).

    A corrupt record is a ``CommandError`` (exit 1) naming the key and the reason.
    """
    try:
        return decode(value)
    except CorruptRecord as exc:
        raise CommandError(f"record {key!r} is corrupt, left as it is: {exc}") from exc


def _then(hint: str | None) -> str:
    return "" if hint is None else f"; {hint}"


def holder_state(store: Store, lock: Lock | None) -> str:
    """``"free"``, ``"live"`` (its session's lease is current) or ``"expired"``."""
    if lock is None:
        return "free"
    return "expired" if store.get_lease(lock.session).expired else "live"


def lock_json(store: Store, lock: Lock | None) -> dict[str, Any] | None:
    """The lock as JSON for ``--json`` output, with its holder's state and age."""
    if lock is None:
        return None
    return {
        "session": lock.session,
        "epoch": lock.epoch,
        "acquired": lock.acquired,
        "age": round(max(time.time() - lock.acquired, 0.0), 3),
        "state": holder_state(store, lock),
    }


@contextmanager
def admin_session(
    store: Store, args: argparse.Namespace, key: str, mode: LoadMode, timeout: float
) -> Iterator[Locker]:
    """Load ``key`` in a session of this tool, yield the loaded locker, save and release.

    ``force`` writes a release request and waits up to ``timeout`` seconds for the
    holder to save and release (it never takes a live lock by timeout; an expired
    holder is taken over as usual); ``steal`` takes the lock at once. The spec runs at
    the record's stored version unless ``--spec`` is given (see ``options.admin_spec``).
    """
    current = store.read(store_key(args, key))
    schema = None if current is None else decode_stored(key, current.value).schema
    spec = dataclasses.replace(admin_spec(args, schema), force_timeout=NEVER, poll_period=0.2)
    service = LockerService(store, spec, workers=2)
    try:
        with service.session(key, mode, timeout=timeout) as locker:
            yield locker
    finally:
        service.close()
