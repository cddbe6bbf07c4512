"""User ids of a record: the users it belongs to, as ProfileService's ``AddUserId``.

A record may belong to any number of users (a player's save to one, a guild or a
shared house to several). The ids are kept in the record's ``user_ids`` (sorted
strings), beside the data and written in the same save, so stores can index them and
answer ``keys_for_user`` (the basis of a data-erasure request). The locker's copy lives
in its ``Ledger``; changing it marks a change, saved like any change to the data.
"""

from __future__ import annotations

from sessionlocker.core.operations import Operations
from sessionlocker.core.record import check_user_id

__all__ = ["UserCalls"]


class UserCalls:
    """The user-id calls of ``Locker``."""

    _ops: Operations

    @property
    def user_ids(self) -> tuple[str, ...]:
        """The users this record belongs to, sorted (empty before the load completes)."""
        return tuple(sorted(self._ops.ledger.user_ids))

    def add_user_id(self, user_id: str) -> int:
        """Associate ``user_id`` with the record; returns the change id for ``when_saved``.

        Allowed while loading (applied again on the loaded record) or loaded; raises
        ``UsageError`` otherwise. Adding an id already there still marks a change.
        """
        checked = check_user_id(user_id)
        return self._ops.edit_ledger(lambda ledger: ledger.user_ids.add(checked), "add a user id")

    def remove_user_id(self, user_id: str) -> int:
        """Dissociate ``user_id`` (absent is fine); returns the change id, as ``add_user_id``."""
        checked = check_user_id(user_id)
        change = self._ops.edit_ledger
        return change(lambda ledger: ledger.user_ids.discard(checked), "remove a user id")
