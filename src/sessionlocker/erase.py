"""Erase every record of a user (a data-erasure request), each under its lock.

``erase_user(service, user_id)`` finds the user's keys (``service.keys_for_user``) and,
for each, takes the lock the way a server does: a release request that a live holder
answers by saving and releasing, then a bounded wait. It never steals from a live
holder: a lock still held when ``timeout`` runs out (or a holder whose lease is alive
and does not answer) leaves that record untouched and is reported as ``locked``. A
dead holder's lock is taken over after its lease expires, as for any load.

Once the lock is ours we release it and delete the now free record at the revision we
read: anything that slipped in between (a server loading it, a remote change) moves the
revision, so the delete is refused and the round is tried again. Nothing is
overwritten, and no locker ends by finding its record gone. The record's history entries
are dropped too (``KeepsHistory.forget``), since they hold the data as well. A record
that no longer lists the user is left alone. An erased key leaves a mark beside the
records (``ERASED_PREFIX`` + its store key; the time and the erasing session, no data
and no user id), so ``sessionlocker history`` can say the key was erased.

The report says, per key, what happened; ``audit_line`` is the JSON line an operator
keeps (who, when, which user, which keys, the result; never the data), and
``erase_user`` also logs it on the ``sessionlocker.erase`` logger.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sessionlocker.core.modes import Attempt, LoadMode
from sessionlocker.core.protocol import Put, Versioned
from sessionlocker.core.record import check_user_id, decode
from sessionlocker.core.states import Status
from sessionlocker.errors import Conflict, CorruptRecord, LockUnavailable, SessionLockerError
from sessionlocker.stores.base import KeepsHistory, Store

if TYPE_CHECKING:
    from sessionlocker.drivers.service import LockerService

__all__ = [
    "ERASED",
    "ERASED_PREFIX",
    "GONE",
    "LOCKED",
    "NOT_LISTED",
    "EraseReport",
    "KeyResult",
    "erase_user",
    "erased_at",
]

log = logging.getLogger("sessionlocker.erase")

#: The record was deleted.
ERASED = "erased"
#: The record was already gone when we came to it.
GONE = "gone"
#: The lock could not be had in time; the record is untouched.
LOCKED = "locked"
#: The record no longer lists the user; it is untouched.
NOT_LISTED = "not_listed"
#: Anything else (a store error, an unreadable record); the record is untouched.
FAILED = "failed"

#: Where an erasure leaves its mark: this prefix, then the erased record's store key.
ERASED_PREFIX = "sessionlocker.erased/"

_LIVE = frozenset({Status.LOADING, Status.WAITING, Status.LOADED, Status.RELEASING})
#: Rounds of "take the lock, release it, delete the free record" before giving up.
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class KeyResult:
    """What happened to one key: ``result`` is one of the constants above."""

    key: str
    result: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EraseReport:
    """The outcome of ``erase_user``: per key, in key order."""

    user_id: str
    namespace: str
    session: str
    started: float
    finished: float
    keys: tuple[KeyResult, ...]

    @property
    def ok(self) -> bool:
        """True when no record of the user is left (each erased, gone or not listed)."""
        return all(k.result in (ERASED, GONE, NOT_LISTED) for k in self.keys)

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready values."""
        return {
            "user_id": self.user_id,
            "namespace": self.namespace,
            "session": self.session,
            "started": self.started,
            "finished": self.finished,
            "ok": self.ok,
            "keys": [{"key": k.key, "result": k.result, "detail": k.detail} for k in self.keys],
        }

    def audit_line(self) -> str:
        """One JSON line for an audit log: who (OS user, host), when, what, the result."""
        entry = {
            "event": "erase_user",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.finished)),
            "by": _operator(),
            **self.as_dict(),
        }
        return json.dumps(entry, sort_keys=True, ensure_ascii=False)


def erase_user(service: LockerService, user_id: str, timeout: float = 10.0) -> EraseReport:
    """Delete every record of ``service``'s namespace that lists ``user_id``.

    Each key gets up to ``timeout`` seconds to have its lock released to us. Raises
    ``StoreError`` only if the keys cannot be listed; per-key failures are in the
    report. Blocks; drives ``service`` itself, so call it from the thread that owns it.
    """
    user_id = check_user_id(user_id)
    started = time.time()
    results = [_erase_key(service, key, user_id, timeout) for key in service.keys_for_user(user_id)]
    report = EraseReport(
        user_id=user_id,
        namespace=service.spec.namespace,
        session=service.lease_id,
        started=started,
        finished=time.time(),
        keys=tuple(results),
    )
    log.info("%s", report.audit_line())
    return report


def _erase_key(service: LockerService, key: str, user_id: str, timeout: float) -> KeyResult:
    store_key = service.spec.store_key(key)
    result = KeyResult(key, FAILED, "the record kept changing")
    for _ in range(_ATTEMPTS):
        try:
            stored = service.store.read(store_key)
            if stored is None:
                return KeyResult(key, GONE)
            record = decode(stored.value)
            if user_id not in record.user_ids:
                return KeyResult(key, NOT_LISTED)
            if record.lock is None:  # free: delete it unless it moved since this read
                service.store.delete(store_key, expected=stored.revision)
                if isinstance(service.store, KeepsHistory):  # the old versions hold the data too
                    service.store.forget(store_key)
                _mark_erased(service.store, store_key, service.lease_id)
                return KeyResult(key, ERASED)
        except Conflict:  # loaded, or sent a remote change, meanwhile: look again
            continue
        except (CorruptRecord, SessionLockerError) as exc:
            return KeyResult(key, FAILED, f"{type(exc).__name__}: {exc}")
        result = _have_released(service, key, timeout)
        if result.result != ERASED:
            return result
    return result


def _mark_erased(store: Store, store_key: str, session: str) -> None:
    """Note that ``store_key`` was erased, now, by ``session`` (for ``erased_at``). Best
    effort: the record is erased either way, so a failure is only logged."""
    value = json.dumps({"erased": time.time(), "session": session}).encode()

    def mark(current: Versioned | None) -> Put[None]:
        return Put(value, None)

    try:
        store.update(ERASED_PREFIX + store_key, mark)
    except SessionLockerError as exc:
        log.warning("key=%s erased, but its erasure mark was not written: %s", store_key, exc)


def erased_at(store: Store, store_key: str) -> tuple[float, str] | None:
    """When ``store_key`` was last erased and by which session, if ``erase_user`` did."""
    stored = store.read(ERASED_PREFIX + store_key)
    if stored is None:
        return None
    try:
        mark = json.loads(stored.value)
        return float(mark["erased"]), str(mark["session"])
    except (ValueError, KeyError, TypeError):  # not our mark: say nothing
        return None


def _have_released(service: LockerService, key: str, timeout: float) -> KeyResult:
    """Ask the holder to release (never steal); once we hold the lock, release it ourselves.

    The record is then free, for the caller to delete at the revision it reads, so no
    locker of ours ends by finding its record gone (which it would report as a lost lock).
    """
    locker = service.locker(key)
    locker.acquire(_ask_never_steal)
    service.run_until(lambda: locker.status not in (Status.LOADING, Status.WAITING), timeout)
    loaded = locker.status is Status.LOADED
    error = locker.error
    locker.release()
    service.run_until(lambda: locker.status not in _LIVE, timeout)
    if not loaded:
        error = error or LockUnavailable(f"not released within {timeout} s")
        return KeyResult(key, LOCKED, f"{type(error).__name__}: {error}")
    return KeyResult(key, ERASED)  # free now, as far as we know


def _ask_never_steal(attempt: Attempt) -> LoadMode:
    """Write one release request, then wait: never take a live holder's lock."""
    return LoadMode.FORCE if attempt.number <= 1 else LoadMode.REPEAT


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "?"
    return f"{user}@{socket.gethostname()}"
