"""The history entries of a record, by date (``LockerService.history``, ``sessionlocker
history`` and ``restore --at``).

A store that keeps versions (``KeepsHistory``: SQLite and PostgreSQL by default, memory and
Redis with ``history=N``) dates each one with its own clock at the write. A version
kept before stores dated them has ``written`` ``None``: it is listed, but left out of
any selection by date, since when it was written is not known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sessionlocker.core.record import Record, decode
from sessionlocker.errors import CorruptRecord, UsageError
from sessionlocker.stores.base import Entry, KeepsHistory, Store
from sessionlocker.stores.readonly import ReadOnlyStore

__all__ = [
    "Moment",
    "PastVersion",
    "kept_versions",
    "past_version",
    "seconds",
    "select",
    "version_at",
]

#: A point in time: epoch seconds, or a ``datetime`` that knows its time zone.
Moment = float | int | datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PastVersion:
    """One history entry of a record: when the store wrote it (epoch seconds, ``None``
    when not recorded), its revision, the lock epoch it was written in, its size in
    bytes, its data version (``schema``) and the session that held the lock then.
    ``epoch``, ``schema`` and ``held_by`` are ``None`` when the bytes are not a readable
    record (``error`` says why).
    """

    key: str
    revision: int
    written: float | None
    size: int
    epoch: int | None = None
    schema: int | None = None
    held_by: str | None = None
    error: str | None = None
    value: bytes = field(repr=False, default=b"")

    @property
    def record(self) -> Record:
        """The stored record, decoded (``CorruptRecord`` if it cannot be)."""
        return decode(self.value)

    @property
    def data(self) -> Any:
        """The data as it was stored then (not migrated)."""
        return self.record.data


def past_version(key: str, version: Entry) -> PastVersion:
    """``version`` described, without raising on bytes that are not a record."""
    found = PastVersion(
        key=key,
        revision=version.revision,
        written=version.written,
        size=len(version.value),
        value=version.value,
    )
    try:
        record = decode(version.value)
    except CorruptRecord as exc:
        return replace(found, error=f"corrupt: {exc}")
    held_by = None if record.lock is None else record.lock.session
    return replace(found, epoch=record.epoch, schema=record.schema, held_by=held_by)


def seconds(moment: object, name: str) -> float:
    """``moment`` as epoch seconds; ``UsageError`` for a naive ``datetime`` or a non-time."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise UsageError(f"{name} must know its time zone (a naive datetime is ambiguous)")
        return moment.timestamp()
    if isinstance(moment, int | float) and not isinstance(moment, bool) and math.isfinite(moment):
        return float(moment)
    raise UsageError(f"{name} must be epoch seconds or an aware datetime, not {moment!r}")


def select(
    versions: list[Entry],
    *,
    before: Moment | None = None,
    after: Moment | None = None,
    limit: int | None = None,
) -> list[Entry]:
    """The versions (newest first) written strictly before ``before`` and strictly after
    ``after`` (to the microsecond), at most ``limit`` of them. With a date given, undated
    versions are left out."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise UsageError(f"limit must be a whole number >= 1 or None, not {limit!r}")
    upper = None if before is None else _micros(seconds(before, "before"))
    lower = None if after is None else _micros(seconds(after, "after"))
    chosen = [
        v
        for v in versions
        if (upper is None or (v.written is not None and _micros(v.written) < upper))
        and (lower is None or (v.written is not None and _micros(v.written) > lower))
    ]
    return chosen if limit is None else chosen[:limit]


def version_at(versions: list[Entry], moment: Moment) -> Entry | None:
    """The version that was current at ``moment``: the newest written at or before it.

    ``None`` when none is known to be: every history entry is newer, or the newest one
    not after ``moment`` has no date (an older, undated one might have been current).
    """
    when = _micros(seconds(moment, "the time"))
    for version in versions:  # newest first
        if version.written is None:
            return None
        if _micros(version.written) <= when:
            return version
    return None


def _micros(seconds: float) -> int:
    """Whole microseconds: times compare at the precision they are shown and kept with
    (Redis and PostgreSQL keep microseconds), so a time copied from ``history`` selects
    the version it was shown for. The fraction is taken apart first, as ``datetime``
    does: ``seconds * 1e6`` would round a large time's last digit the other way."""
    whole = math.floor(seconds)
    return whole * 1_000_000 + round((seconds - whole) * 1_000_000)


def kept_versions(store: Store, store_key: str) -> list[Entry]:
    """The versions ``store`` keeps of ``store_key``, newest first; ``UsageError`` when
    it keeps none (a read-only service reads those of the store it wraps)."""
    if isinstance(store, ReadOnlyStore):
        store = store.inner
    if not isinstance(store, KeepsHistory):
        raise UsageError(f"this store ({type(store).__name__}) keeps no versions")
    return store.history(store_key)
