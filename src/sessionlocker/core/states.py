"""The locker's statuses, the events that move it, and the table of legal moves; the
lifecycle events a user can listen to, and the kinds of request a locker sends."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EVENTS", "TRANSITIONS", "Event", "Lifecycle", "RequestKind", "Status"]


class Status(StrEnum):
    """Where a locker is in its life."""

    #: not loaded and not trying to be; ``acquire()`` starts a load
    IDLE = "idle"
    #: trying to take the lock
    LOADING = "loading"
    #: another session holds the lock; looking again later as the mode says
    WAITING = "waiting"
    #: we hold the lock; data may be changed and is saved
    LOADED = "loaded"
    #: saving for the last time and clearing the lock (or cancelling a load)
    RELEASING = "releasing"
    #: another session took the lock; unsaved changes were not saved
    LOST = "lost"
    #: the stored record was refused (see ``failure``); it was left untouched
    FAILED = "failed"


class Event(StrEnum):
    """What moves a locker from one status to another."""

    ACQUIRE = "acquire"
    HELD = "held"
    RETRY = "retry"
    GRANTED = "granted"
    RELEASE = "release"
    RELEASED = "released"
    REPLACED = "replaced"
    CANCEL = "cancel"
    LOSE = "lose"
    FAIL = "fail"


S, E = Status, Event

#: Every legal move: (status, event) -> next status. Also drawn in docs/state-diagram.md.
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.IDLE, E.ACQUIRE): S.LOADING,
    (S.LOST, E.ACQUIRE): S.LOADING,
    (S.FAILED, E.ACQUIRE): S.LOADING,
    (S.LOADING, E.GRANTED): S.LOADED,
    (S.LOADING, E.HELD): S.WAITING,
    (S.LOADING, E.FAIL): S.FAILED,
    (S.LOADING, E.LOSE): S.LOST,
    (S.LOADING, E.RELEASE): S.RELEASING,
    (S.WAITING, E.RETRY): S.LOADING,
    (S.WAITING, E.CANCEL): S.IDLE,
    (S.WAITING, E.RELEASE): S.RELEASING,
    (S.WAITING, E.FAIL): S.FAILED,
    (S.LOADED, E.RELEASE): S.RELEASING,
    (S.LOADED, E.LOSE): S.LOST,
    (S.RELEASING, E.RELEASED): S.IDLE,
    (S.RELEASING, E.REPLACED): S.IDLE,
    (S.RELEASING, E.LOSE): S.LOST,
}


class Lifecycle(StrEnum):
    """Lifecycle events a callback can be registered for with ``Locker.on`` (by name:
    the values are the public event names). ``handoff`` and ``takeover`` follow
    ``loaded`` when the lock came from another session: handed over on our release
    request, or taken from a session that did not release it (its lease expired, a
    steal, or a force timeout)."""

    LOADED = "loaded"
    HANDOFF = "handoff"
    TAKEOVER = "takeover"
    REPLACED = "replaced"
    BEFORE_SAVE = "before_save"
    SAVED = "saved"
    RELEASED = "released"
    LOST = "lost"
    FAILED = "failed"
    IDLE = "idle"
    ERROR = "error"
    CREDIT = "credit"


#: The names of the ``Lifecycle`` events, as plain strings.
EVENTS = frozenset(event.value for event in Lifecycle)


class RequestKind(StrEnum):
    """The kind of the one store request a locker has in flight
    (``Locker.request_in_flight``; the values are what it reports)."""

    #: take the lock (or load it)
    ACQUIRE = "acquire"
    #: check a lock granted while our lease lapsed before announcing it
    CONFIRM = "confirm"
    #: write data (and release, when it is the last save)
    SAVE = "save"
    #: read the holder's lease (the value keeps its old name)
    LEASE = "session"
    #: write a release request on a record another session holds
    REQUEST = "request"
    #: put a committed outbox message in its receiver's inbox
    DELIVER = "deliver"
    #: clear our release request or our unconfirmed lock
    WITHDRAW = "withdraw"
    #: clear a lock a stray acquire of ours may have written
    FENCE = "fence"
