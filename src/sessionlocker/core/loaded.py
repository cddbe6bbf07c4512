"""``LoadedRecord``: what every API hands a caller for a record it holds, as one type.

The blocking ``LockerService.session()`` yields the ``Locker`` itself, the async
``session()`` a ``Profile`` (the locker plus ``await saved()``), the easy API an
``EasyProfile`` (which outlives a session: callbacks, ``is_loaded``). They stay three
classes because each adds what only its driver can do; code that only reads and
changes the data takes a ``LoadedRecord[D]`` and works with all three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

__all__ = ["LoadedRecord"]

D_co = TypeVar("D_co", covariant=True)


class LoadedRecord(Protocol[D_co]):
    """A record held by this process: its key and data, and how to mark a change."""

    @property
    def key(self) -> str:
        """The record's key."""
        ...

    @property
    def data(self) -> D_co:
        """The data; change it in place, then ``mark_changed()`` (or use ``edit``)."""
        ...

    def mark_changed(self) -> int:
        """Note that ``data`` changed; returns the change id."""
        ...

    def edit(self, change: Callable[[D_co], object], /) -> int:
        """Apply ``change(data)`` and mark it; returns the change id."""
        ...
