"""``Profile``: the loaded record of one ``AsyncLockerService.session()`` block.

A thin view of the session's ``Locker`` (its data, change marks, user ids and tags)
plus ``await saved()``, which waits on the service's frames until the data as it is
now is in a committed write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sessionlocker.core.locker import Locker
from sessionlocker.core.snapshot import SaveFacts
from sessionlocker.core.spec import D
from sessionlocker.core.states import Status
from sessionlocker.errors import DataError, LockLost

if TYPE_CHECKING:
    from sessionlocker.drivers.aio import AsyncLockerService

__all__ = ["Profile"]


class Profile(SaveFacts[D]):
    """The loaded locker of one ``AsyncLockerService.session()``; ``data`` is a ``D``.

    ``data``, ``mark_changed``, ``edit``, ``token`` and ``is_available`` are the
    locker's; everything else is on ``locker``. ``await saved()`` is the one
    addition: it waits until the current data is in a committed write.
    """

    locker: Locker[D]

    def __init__(self, locker: Locker[D], service: AsyncLockerService[D]) -> None:
        self.locker = locker
        self._service = service

    @property
    def key(self) -> str:
        """The locker's key."""
        return self.locker.key

    @property
    def data(self) -> D:
        """The loaded data; change it in place, then ``mark_changed()``."""
        return self.locker.data

    @data.setter
    def data(self, value: D) -> None:
        self.locker.data = value

    @property
    def token(self) -> int | None:
        """The fencing epoch of this session (grows with every acquire)."""
        return self.locker.token

    @property
    def status(self) -> Status:
        """The locker's status (``loaded`` while the session holds it)."""
        return self.locker.status

    def mark_changed(self) -> int:
        """Note that ``data`` changed; returns the change id."""
        return self.locker.mark_changed()

    def edit(self, change: Callable[[D], object]) -> int:
        """Apply ``change(data)`` and mark it; returns the change id."""
        return self.locker.edit(change)

    @property
    def user_ids(self) -> tuple[str, ...]:
        """The users this record belongs to (see ``Locker.add_user_id``)."""
        return self.locker.user_ids

    def add_user_id(self, user_id: str) -> int:
        """Associate ``user_id`` with the record, saved like a data change; the change id."""
        return self.locker.add_user_id(user_id)

    def remove_user_id(self, user_id: str) -> int:
        """Dissociate ``user_id`` (absent is fine); the change id."""
        return self.locker.remove_user_id(user_id)

    @property
    def tags(self) -> dict[str, Any]:
        """A copy of the record's metadata tags (see ``Locker.set_tag``)."""
        return self.locker.tags

    def set_tag(self, name: str, value: Any) -> int:
        """Set tag ``name`` to a copy of ``value`` (JSON), saved like a data change."""
        return self.locker.set_tag(name, value)

    def remove_tag(self, name: str) -> int:
        """Remove tag ``name`` (absent is fine); the change id."""
        return self.locker.remove_tag(name)

    def is_available(self) -> bool:
        """Loaded, and the lease still within its renew deadline."""
        return self.locker.is_available()

    async def saved(self, timeout: float | None = None) -> None:
        """Wait until the data as it is now is in a committed write (YieldUntilChangesSaved).

        Raises ``LockLost`` when the lock was lost (the change will never be saved here),
        the data error that keeps the save from being written (``UnstorableData``,
        ``InvalidData``), or ``TimeoutError`` after ``timeout`` seconds.
        """
        locker = self.locker
        error_before = locker.error
        change = locker.mark_changed()
        answer: list[bool] = []
        locker.when_saved(change, answer.append)
        locker.force_save()

        def settled() -> bool:
            refused = isinstance(locker.error, DataError) and locker.error is not error_before
            return bool(answer) or refused

        if not await self._service.wait_until(settled, timeout):
            raise TimeoutError(f"{self.key!r} was not saved within {timeout} s")
        if answer == [True]:
            return
        if isinstance(locker.error, LockLost | DataError):
            raise locker.error
        raise LockLost(f"{self.key!r} ended before its changes were saved")

    def __repr__(self) -> str:
        return f"<Profile {self.key!r} {self.status.value}>"
