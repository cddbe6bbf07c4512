"""Pure transforms of a stored record: acquire, save (and release), release requests,
and delivery of a message to a record's inbox.

Each is a function from what is stored to a decision (``Put`` or ``Keep``) with an
outcome. They never raise on a stranger's lock or bad bytes: they say so in the
outcome, and keep the stored bytes as they are. They are idempotent, so a call whose
reply was lost is resolved by running the same transform again on a fresh read:

- acquire finds our own session on the lock and reports ``Granted`` without writing;
- save finds its own ``stamp`` (session, epoch, save number) and reports ``Saved``;
- deliver finds the message id in the inbox or the applied history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sessionlocker.core.known import Known, decode_known, known_after
from sessionlocker.core.ledger import Meta
from sessionlocker.core.protocol import Keep, Put, Transform, Versioned
from sessionlocker.core.record import (
    Lock,
    Message,
    Record,
    ReleaseRequest,
    Stamp,
    decode,
    encode,
)
from sessionlocker.core.storable import encode_data
from sessionlocker.errors import (
    CorruptRecord,
    DataError,
    MigrationError,
    NewerSchema,
    UnstorableData,
)

__all__ = [
    "Current",
    "Delivered",
    "Expired",
    "Free",
    "Granted",
    "Held",
    "Known",
    "Locked",
    "Lost",
    "Refused",
    "Requested",
    "Saved",
    "TooLarge",
    "Upgraded",
    "Withdrawn",
    "acquire",
    "confirm",
    "deliver",
    "known_after",
    "load_data",
    "request_release",
    "save",
    "upgrade_unlocked",
    "withdraw",
]


@dataclass(frozen=True, slots=True)
class Granted:
    """We hold the lock now (``created``: the record did not exist before).

    ``data_json`` is the stored data as it was checked to be storable.
    """

    record: Record
    created: bool
    data_json: str
    #: The session whose lock this acquire took over (a steal or a takeover), if any:
    #: its process is told, so a live holder learns it lost the record.
    took_from: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """Another session holds the lock; ``requested``: our release request is on it.

    ``asked``: this acquire wrote that request (an acquire with ``ask``, ``force``),
    so the holder's process is told. ``record`` is the stored record as read (data
    included), so a release request written on those same bytes need not decode them
    again (``request_release``).
    """

    lock: Lock
    requested: bool
    record: Record | None = field(default=None, compare=False, repr=False)
    asked: bool = False


@dataclass(frozen=True, slots=True)
class Expired:
    """The acquire ran after its validity (``expires``): nothing was written.

    A late acquire (a retried request that reaches the store after its sender gave up
    on it, or a reply still unread when the locker had moved on) must not take a lock
    that no locker is waiting for; its locker sends a fresh one if it still wants it.
    """


@dataclass(frozen=True, slots=True)
class Refused:
    """The stored record may not be loaded; nothing was written.

    ``reason`` is ``corrupt``, ``newer_schema`` or ``migration_error``.
    """

    reason: str
    error: DataError


@dataclass(frozen=True, slots=True)
class TooLarge:
    """The record would be ``size`` bytes, over the limit; nothing was written."""

    size: int


@dataclass(frozen=True, slots=True)
class Saved:
    """Our write with this save number is committed.

    ``released``: that write cleared the lock. ``held``: we still hold the lock;
    ``asked``: and another session asks for it (a release request is on the record):
    the holder stops being available, then releases with a save of its own. Not
    released and not held: the write committed, then another session took the lock
    (a lost reply, learned on retry). ``inbox`` is the stored inbox after the write:
    messages the holder may not know yet.
    """

    released: bool
    asked: bool
    held: bool
    inbox: tuple[Message, ...] = ()
    #: The record this save wrote, its ``data`` left out (``None`` when nothing was
    #: written): the next save starts from it instead of decoding the bytes again.
    written: Record | None = field(default=None, compare=False, repr=False)
    #: The record as read when nothing was written (a look that found a release
    #: request, say): the save that follows starts from it when the bytes have not moved.
    seen: Record | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Lost:
    """Another session (or none) holds the lock: our save was not written."""

    lock: Lock | None


@dataclass(frozen=True, slots=True)
class Requested:
    """Our release request is on the record held by ``lock``."""

    lock: Lock


@dataclass(frozen=True, slots=True)
class Free:
    """The record is absent, unlocked or ours: no request is needed."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """The message is in the record's inbox; ``already``: it was there or was applied.

    ``holder``: the session holding the record, if any, whose process is told to look.
    """

    already: bool
    holder: str | None = None


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """No release request and no lock of ours is left on the record."""


AcquireOutcome = Granted | Held | Refused | Expired
ConfirmOutcome = Granted | Lost
SaveOutcome = Saved | Lost | TooLarge
RequestOutcome = Requested | Free | Refused
DeliverOutcome = Delivered | Refused | TooLarge


def _unchanged(record: Record) -> Record:
    return record


def acquire(
    *,
    session: str,
    at: float,
    fresh: Record,
    fresh_json: str,
    upgrade: Callable[[Record], Record] = _unchanged,
    take_over: Lock | None = None,
    expires: float = float("inf"),
    wall: Callable[[], float] | None = None,
    ask: bool = False,
) -> Transform[AcquireOutcome]:
    """Take the lock if it is free (or exactly ``take_over``), bumping the epoch.

    A missing record is created as ``fresh`` holding ``fresh_json``. A stored record is
    first brought up to date by ``upgrade`` (migrations), written in the same write as
    the lock. A lock already naming our session is ours (a retry after a lost reply).
    Run at or after ``expires`` by the sender's ``wall`` clock, it writes nothing
    (``Expired``): the sender then knows when a stray acquire of its own can no longer
    take the record (see ``Locker``). With ``ask`` (the ``force`` mode), a record
    another session holds gets our release request at ``at`` in the same call, as
    ``request_release`` writes it (``Held`` with ``asked``), unless it has one of ours.
    """

    def transform(current: Versioned | None) -> Put[AcquireOutcome] | Keep[AcquireOutcome]:
        if wall is not None and wall() >= expires:
            return Keep(Expired())
        if current is None:
            record = fresh.with_(data=None, epoch=1, lock=Lock(session, 1, at))
            created = record.with_(data=json.loads(fresh_json))
            return Put(encode(record, fresh_json), Granted(created, True, fresh_json))
        try:
            record = decode(current.value)
        except CorruptRecord as exc:
            return Keep(Refused("corrupt", exc))
        lock = record.lock
        mine = lock is not None and lock.session == session
        if lock is not None and not mine and lock != take_over:
            requested = _requested_by(record, session)
            if not ask or requested:
                return Keep(Held(lock, requested=requested, record=record))
            held = Held(lock, requested=True, asked=True)
            return Put(_asked(record, session, at), held)
        loaded = _loadable(record, upgrade)
        if isinstance(loaded, Refused):
            return Keep(loaded)
        upgraded, data_json = loaded
        if mine and upgraded is record:
            return Keep(Granted(record, False, data_json))
        took_from = None
        if not mine:
            epoch = record.epoch + 1
            upgraded = upgraded.with_(
                epoch=epoch, lock=Lock(session, epoch, at), release_requests=()
            )
            took_from = None if lock is None else lock.session
        granted = Granted(upgraded, False, data_json, took_from)
        # A free record with no request on it: nobody waits for this write (a waiter
        # waits for a release, which notifies), so it need not wake the watchers.
        free = lock is None and not record.release_requests
        return Put(encode(upgraded, data_json), granted, quiet=free)

    return transform


def load_data(record: Record, upgrade: Callable[[Record], Record]) -> tuple[Record, str]:
    """The record upgraded as ``acquire`` would, with its data encoded; raises the
    ``DataError`` a load would be refused with (nothing is written either way)."""
    loaded = _loadable(record, upgrade)
    if isinstance(loaded, Refused):
        raise loaded.error
    return loaded


def _loadable(record: Record, upgrade: Callable[[Record], Record]) -> tuple[Record, str] | Refused:
    """The record upgraded, with its data encoded; or why it may not be loaded."""
    try:
        upgraded = upgrade(record)
    except NewerSchema as exc:
        return Refused("newer_schema", exc)
    except MigrationError as exc:
        return Refused("migration_error", exc)
    try:
        return upgraded, encode_data(upgraded.data)
    except UnstorableData as exc:
        if upgraded is record:
            return Refused("corrupt", CorruptRecord(f"stored data is not plain JSON: {exc}"))
        return Refused("migration_error", MigrationError("migration", exc))


def confirm(*, session: str, epoch: int, checked: int) -> Transform[ConfirmOutcome]:
    """Our acquire of ``epoch`` came back late: is the lock still ours? (``Granted``)

    A reply handled after our lease may have lapsed (another session may have taken
    the record over meanwhile) is confirmed before the locker announces ``loaded``.
    The lock's lapse count is rewritten to ``checked`` (always a write, as in ``save``),
    so a takeover judged during the lapse can no longer land after the confirmation.
    """

    def transform(current: Versioned | None) -> Put[ConfirmOutcome] | Keep[ConfirmOutcome]:
        if current is None:
            return Keep(Lost(None))
        try:
            record = decode(current.value)
        except CorruptRecord:
            return Keep(Lost(None))
        lock = record.lock
        if lock is None or not record.held_by(session, epoch):
            return Keep(Lost(lock))
        loaded = _loadable(record, _unchanged)
        if isinstance(loaded, Refused):
            return Keep(Lost(None))
        _, data_json = loaded
        record = record.with_(lock=replace(lock, checked=checked))
        return Put(encode(record, data_json), Granted(record, False, data_json))

    return transform


def save(
    *,
    session: str,
    epoch: int,
    seq: int,
    data_json: str | bytes,
    release: bool = False,
    only_if_asked: bool = False,
    encoding: str | None = None,
    max_bytes: int | None = None,
    checked: int | None = None,
    meta: Meta | None = None,
    known: Known | None = None,
) -> Transform[SaveOutcome]:
    """Write our data as save number ``seq`` of our epoch, if we still hold the lock.

    The holder learns of release requests here (``asked``), but a save that is not a
    ``release`` never clears the lock: the holder first stops being available, then
    releases with a save of its own, so two owners are never available at once. With
    ``only_if_asked`` nothing is written (an autosave with nothing new to save, or a
    look for release requests after a notification).
    ``encoding`` stores the data compressed; a record over ``max_bytes`` is not written.
    ``checked`` rewrites the lock's lapse count (a re-check after a lease lapse): it is
    always a write, so a takeover conditional on the old lock value cannot land after.
    ``meta`` (the holder's histories, credit, outbox, applied inbox messages, user ids
    and tags) is written with the data, so an operation's effect and its id commit
    together.
    ``known`` spares decoding the stored bytes when they are the ones it names.
    ``data_json`` is the data's JSON text, or better its UTF-8 bytes (spliced as they are).
    """
    stamp = Stamp(session, epoch, seq)

    def transform(current: Versioned | None) -> Put[SaveOutcome] | Keep[SaveOutcome]:
        if current is None:
            return Keep(Lost(None))
        try:
            record = decode_known(current.value, known)
        except CorruptRecord:
            return Keep(Lost(None))
        held = record.held_by(session, epoch)
        asked = held and bool(record.release_requests) and not release
        if _ours_at_least(record.stamp, stamp):  # this save, or a later one, committed
            released = record.lock is None and record.epoch == epoch
            return Keep(Saved(released, asked, held, record.inbox))
        if not held:
            return Keep(Lost(record.lock))
        lock = record.lock
        # One copy of the record with every change (``Record.with_``, no dataclasses.replace).
        changes: dict[str, Any] = {"stamp": stamp, "encoding": encoding, "data": None}
        if checked is not None and lock is not None and lock.checked != checked:
            changes["lock"] = Lock(lock.session, lock.epoch, lock.acquired, checked)
        elif only_if_asked:
            seen = record.with_(data=None)
            return Keep(Saved(False, asked, held=True, inbox=record.inbox, seen=seen))
        if release:
            changes.update(lock=None, release_requests=())
        if meta is not None:
            changes.update(meta.changes(record))
        record = record.with_(**changes)
        value = encode(record, data_json)
        if max_bytes is not None and len(value) > max_bytes:
            return Keep(TooLarge(len(value)))
        held_now = record.lock is not None
        saved = Saved(not held_now, asked, held_now, record.inbox, record)
        # Still held: no lock, request or message changed, so no one else waits on it.
        return Put(value, saved, quiet=held_now)

    return transform


def request_release(
    *, session: str, at: float, seen: Known | None = None
) -> Transform[RequestOutcome]:
    """Ask whoever holds the record to save and release it (``force``).

    ``seen`` is the record just read (its bytes and its decoded record, data included):
    when the store hands back those bytes they are not decoded again.
    """

    def transform(current: Versioned | None) -> Put[RequestOutcome] | Keep[RequestOutcome]:
        if current is None:
            return Keep(Free())
        try:
            record = decode_known(current.value, seen)
        except CorruptRecord as exc:
            return Keep(Refused("corrupt", exc))
        lock = record.lock
        if lock is None or lock.session == session:
            return Keep(Free())
        if _requested_by(record, session):
            return Keep(Requested(lock))
        return Put(_asked(record, session, at), Requested(lock))

    return transform


def _asked(record: Record, session: str, at: float) -> bytes:
    """``record`` (data included) with our release request made at ``at``, encoded."""
    requests = (*record.release_requests, ReleaseRequest(session, at))
    return encode(record.with_(release_requests=requests))


def deliver(
    *, message: Message, fresh: Record, fresh_json: str, max_bytes: int | None = None
) -> Transform[DeliverOutcome]:
    """Append ``message`` to the record's inbox, once, whoever holds the record.

    Neither the lock nor the data is touched. A message whose id is already in the
    inbox or in the applied history is not appended again, so a delivery retried after
    a lost reply, or repeated by a sender that crashed before noting it, is harmless.
    A missing record is created as ``fresh`` (holding ``fresh_json``), unlocked.
    """
    entry = replace(message, to=None)

    def transform(current: Versioned | None) -> Put[DeliverOutcome] | Keep[DeliverOutcome]:
        if current is None:
            created = fresh.with_(data=None, inbox=(entry,))
            return Put(encode(created, fresh_json), Delivered(already=False))
        try:
            record = decode(current.value)
        except CorruptRecord as exc:
            return Keep(Refused("corrupt", exc))
        holder = None if record.lock is None else record.lock.session
        if message.id in record.applied or any(m.id == message.id for m in record.inbox):
            return Keep(Delivered(already=True, holder=holder))
        value = encode(record.with_(inbox=(*record.inbox, entry)))
        if max_bytes is not None and len(value) > max_bytes:
            return Keep(TooLarge(len(value)))
        return Put(value, Delivered(already=False, holder=holder))

    return transform


def withdraw(*, session: str, fence: bool = False) -> Transform[Withdrawn]:
    """Remove our release requests, and our lock if one is there (a cancelled load).

    After an acquire whose reply was lost, the lock may be ours without our knowing:
    cancelling must clear it, or it would stay held by a live session with no locker.
    With ``fence`` a stored record is always written, so a stray acquire of ours that
    read the record earlier (a conditional write still on its way) cannot land after.
    """

    def transform(current: Versioned | None) -> Put[Withdrawn] | Keep[Withdrawn]:
        if current is None:
            return Keep(Withdrawn())
        try:
            record = decode(current.value)
        except CorruptRecord:
            return Keep(Withdrawn())
        ours = record.lock is not None and record.lock.session == session
        if not ours and not _requested_by(record, session):
            if fence:
                return Put(encode(record), Withdrawn(), quiet=True)
            return Keep(Withdrawn())
        left = tuple(r for r in record.release_requests if r.by != session)
        cleaned = record.with_(release_requests=left, lock=None if ours else record.lock)
        return Put(encode(cleaned), Withdrawn())

    return transform


def _ours_at_least(stored: Stamp | None, mine: Stamp) -> bool:
    """True if ``stored`` is our own save ``mine`` or a later save of the same epoch."""
    return (
        stored is not None
        and (stored.session, stored.epoch) == (mine.session, mine.epoch)
        and stored.seq >= mine.seq
    )


def _requested_by(record: Record, session: str) -> bool:
    return any(request.by == session for request in record.release_requests)


@dataclass(frozen=True, slots=True)
class Upgraded:
    """The record was migrated from ``before`` to ``after`` (schema, patch)."""

    before: tuple[int, int]
    after: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Current:
    """The record is already at the running version (or newer and compatible)."""


@dataclass(frozen=True, slots=True)
class Locked:
    """A session holds the record; offline migration leaves it to the holder."""

    lock: Lock


UpgradeOutcome = Upgraded | Current | Locked | Refused


def upgrade_unlocked(upgrade: Callable[[Record], Record]) -> Transform[UpgradeOutcome]:
    """Migrate a record that no session holds (``sessionlocker migrate``)."""

    def transform(current: Versioned | None) -> Put[UpgradeOutcome] | Keep[UpgradeOutcome]:
        if current is None:
            return Keep(Current())
        try:
            record = decode(current.value)
        except CorruptRecord as exc:
            return Keep(Refused("corrupt", exc))
        if record.lock is not None:
            return Keep(Locked(record.lock))
        loaded = _loadable(record, upgrade)
        if isinstance(loaded, Refused):
            return Keep(loaded)
        upgraded, data_json = loaded
        if upgraded is record:
            return Keep(Current())
        outcome = Upgraded((record.schema, record.patch), (upgraded.schema, upgraded.patch))
        return Put(encode(upgraded, data_json), outcome)

    return transform
