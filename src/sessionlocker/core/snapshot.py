"""Snapshots of a record, and why a save happens.

A ``Snapshot`` is a frozen copy of one record as stored: the data (as JSON text, decoded
afresh at each ``data`` access, so no one can change what it holds) and the record's
metadata. ``LockerService.view(key)`` returns one read without a lock; a locker keeps
one of its last committed write (``Locker.last_saved``). ``SaveReason`` says why a
locker saves (``Locker.save_reason``, set before the ``before_save`` event).

No I/O and no clock here: the write time is handed in by the caller (the store's, for
a view; the driver's, for a save).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, Protocol

from sessionlocker.core.protocol import Versioned
from sessionlocker.core.record import Lock, Record, decode
from sessionlocker.core.spec import D, Spec
from sessionlocker.core.transforms import load_data

__all__ = ["SaveFacts", "SaveReason", "Saves", "Snapshot", "saved_snapshot", "view_snapshot"]


class SaveReason(StrEnum):
    """Why a locker saves (``Locker.save_reason`` while ``before_save`` runs)."""

    #: the periodic save of a loaded locker (``Spec.autosave_period``), or a save asked
    #: for by the store (a remote change, a lock re-check after a lease lapse)
    AUTOSAVE = "autosave"
    #: ``force_save()``, or changes made before the load completed
    FORCED = "forced"
    #: ``release()`` (the end of ``session()``, ``end_session()``)
    RELEASE = "release"
    #: another server asked for the record (a ``force`` load): the save that hands it over
    HANDOFF = "handoff"
    #: the service is closing (``close()`` / ``aclose()``)
    SHUTDOWN = "shutdown"

    @property
    def ends_lock(self) -> bool:
        """A save for this reason is meant to clear the lock (release, handoff, shutdown).

        ``Locker.final_save`` is the exact flag: while releasing, a first save may still
        keep the lock to commit messages before they are delivered.
        """
        return self is not SaveReason.AUTOSAVE and self is not SaveReason.FORCED


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """One record as stored, frozen.

    - ``data``: the user's data (a new copy at each access); ``data_json`` its JSON text.
      In a view it is migrated in memory to the running ``Spec.version`` (never written).
    - ``lock``: who holds the record (``session``, ``epoch``, ``acquired``: since when, in
      epoch seconds), or ``None`` when it is free.
    - ``epoch``: the fencing counter (the last holder's token); ``revision``: the store's
      revision of these bytes; ``size``: their length.
    - ``written``: when the record was written, in epoch seconds: the store's time for
      a view (``None`` if the store did not record it), the service's wall clock when
      the write's reply came back for ``Locker.last_saved``.
    - ``schema``: the data version stored (a view's ``data`` is at the running one);
      ``user_ids``, ``tags`` (read-only), ``inbox``: how many remote changes wait.
    - ``reason`` and ``final`` (a save's snapshot only): why it was saved, and whether
      that write ended the lock (release, handoff, shutdown): true exactly once per lock.
    """

    key: str
    revision: int
    epoch: int
    schema: int
    lock: Lock | None
    written: float | None
    user_ids: tuple[str, ...]
    tags: MappingProxyType[str, Any]
    inbox: int
    size: int
    data_json: str = field(repr=False)
    reason: SaveReason | None = None
    final: bool = False

    @property
    def data(self) -> Any:
        """The data, decoded afresh from ``data_json`` (change the copy freely)."""
        return json.loads(self.data_json)


#: The tags of a record without any (shared: read-only, and a save makes a snapshot).
_NO_TAGS: MappingProxyType[str, Any] = MappingProxyType({})


def _snapshot(key: str, record: Record, stored: Versioned, **rest: Any) -> Snapshot:
    return Snapshot(
        key=key,
        revision=stored.revision,
        epoch=record.epoch,
        schema=record.schema,
        lock=record.lock,
        user_ids=record.user_ids,
        tags=MappingProxyType(json.loads(json.dumps(record.tags))) if record.tags else _NO_TAGS,
        inbox=len(record.inbox),
        size=len(stored.value),
        **rest,
    )


def view_snapshot(key: str, spec: Spec, stored: Versioned, written: float | None) -> Snapshot:
    """The record a view read, its data migrated in memory as a load would.

    Raises what a load reports: ``CorruptRecord``, ``NewerSchema`` or ``MigrationError``.
    """
    record = decode(stored.value)
    _, data_json = load_data(record, spec.upgrade)
    return _snapshot(key, record, stored, written=written, data_json=data_json)


def saved_snapshot(
    key: str,
    record: Record,
    stored: Versioned,
    *,
    data_json: str,
    written: float,
    reason: SaveReason,
    final: bool,
) -> Snapshot:
    """What a locker's committed save wrote (``record``: as written, data left out)."""
    return _snapshot(
        key, record, stored, written=written, data_json=data_json, reason=reason, final=final
    )


class Saves(Protocol):
    """What a locker says of its saves (``Locker`` is one)."""

    @property
    def save_reason(self) -> SaveReason | None: ...
    @property
    def final_save(self) -> bool: ...
    @property
    def last_saved(self) -> Snapshot | None: ...


class SaveFacts(Generic[D]):
    """What a handle that wraps a locker (``Profile``, ``EasyProfile``) says of its saves."""

    locker: Saves

    @property
    def save_reason(self) -> SaveReason | None:
        """Why the save being made happens (see ``Locker.save_reason``; ``before_save``)."""
        return self.locker.save_reason

    @property
    def final_save(self) -> bool:
        """The save being made is meant to end the lock (see ``Locker.final_save``)."""
        return self.locker.final_save

    @property
    def last_saved(self) -> Snapshot | None:
        """The last committed write of this session (``saved``), as a ``Snapshot``."""
        return self.locker.last_saved
