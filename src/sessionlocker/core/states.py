"""The locker's statuses, the events that move it, and the table of legal moves."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EVENTS", "TRANSITIONS", "Event", "Status"]


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

#: Lifecycle events a callback can be registered for with ``Locker.on``. ``handoff``
#: and ``takeover`` follow ``loaded`` when the lock came from another session: handed
#: over on our release request, or taken from a session that did not release it (its
#: lease expired, a steal, or a force timeout).
EVENTS = frozenset(
    {
        "loaded",
        "handoff",
        "takeover",
        "replaced",
        "before_save",
        "saved",
        "released",
        "lost",
        "failed",
        "idle",
        "error",
        "credit",
    }
)
