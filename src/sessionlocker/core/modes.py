"""Load modes: what a loading locker does when another session holds the record.

``repeat``
    wait until the holder releases or its lease expires, then take over.
``force``
    write a release request (the holder saves and releases at its next save), wait,
    and take over anyway once ``Spec.force_timeout`` has passed since the request.
``steal``
    take the lock at once; the holder finds out at its next save (``lost``).
``cancel``
    give up at once (``LockUnavailable``).

Or a callable, called at each attempt with an ``Attempt`` and returning one of the four
names (ProfileService's ``not_released_handler``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sessionlocker.core.record import Lock
from sessionlocker.errors import UsageError

__all__ = ["Attempt", "LoadMode", "Mode", "ModeName", "check_mode"]


class LoadMode(StrEnum):
    """What to do when the record is held by another live session."""

    #: wait for release or lease expiry
    REPEAT = "repeat"
    #: ask the holder to release; take over after ``Spec.force_timeout``
    FORCE = "force"
    #: take over at once
    STEAL = "steal"
    #: give up at once
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What a mode callable is told at each attempt to load a held record."""

    #: the key being loaded
    key: str
    #: 1 for the first time the record was found held, then 2, 3, ...
    number: int
    #: the lock found on the record
    lock: Lock
    #: seconds since this load started (by the service's clock)
    waited: float


#: A load mode by name, as type checkers see it: a misspelt name is an error.
ModeName = Literal["repeat", "force", "steal", "cancel"]

#: What ``acquire`` and ``session`` take: a ``LoadMode``, its name, or a callable.
Mode = LoadMode | ModeName | Callable[[Attempt], "LoadMode | ModeName"]


def check_mode(mode: Mode | str) -> LoadMode | Callable[[Attempt], LoadMode | str]:
    """A ``LoadMode`` for a name, the callable as it is; ``UsageError`` otherwise."""
    if isinstance(mode, LoadMode):
        return mode
    if isinstance(mode, str):
        try:
            return LoadMode(mode)
        except ValueError:
            names = ", ".join(m.value for m in LoadMode)
            raise UsageError(
                f"unknown load mode {mode!r}; use one of {names} or a callable"
            ) from None
    if callable(mode):
        return mode
    raise UsageError(f"a load mode is a name or a callable, not {type(mode).__name__}")
