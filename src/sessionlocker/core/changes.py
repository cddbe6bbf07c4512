"""Change ids and save confirmation: which marked changes a committed write holds.

Changes are numbered as they are marked. A save carries the highest number it holds,
so confirming it confirms every change up to there. When a session ends, the changes it
never saved are buried: no later session can save them (a new session starts from the
stored data), so their waiters are told False.
"""

from __future__ import annotations

from collections.abc import Callable

from sessionlocker.errors import UsageError

__all__ = ["Changes"]


class Changes:
    """The change counter of one locker, across its sessions."""

    def __init__(self) -> None:
        self.last = 0
        self.saved = 0
        self._base = 0
        self._dead: list[tuple[int, int]] = []
        self._waiters: list[tuple[int, Callable[[bool], None]]] = []

    def mark(self) -> int:
        """A new change; returns its id."""
        self.last += 1
        return self.last

    @property
    def pending(self) -> bool:
        """Some change of this session is not in a committed write yet."""
        return self.last > max(self.saved, self._base)

    def start(self) -> None:
        """A new session starts: earlier changes are not its to save."""
        self.bury()
        self._base = self.last

    def when_saved(self, change_id: int, callback: Callable[[bool], None], *, ended: bool) -> None:
        """Call back True once a committed write holds the change; False if none will
        (at once for 0, the id of a change marked when no save could hold it)."""
        if change_id == 0:
            callback(False)
            return
        if change_id > self.last or change_id < 0:
            raise UsageError(f"no change {change_id!r} was marked")
        if self._dead and any(low < change_id <= high for low, high in self._dead):
            callback(False)
        elif change_id <= self.saved:
            callback(True)
        elif ended:
            callback(False)
        else:
            self._waiters.append((change_id, callback))

    def confirm(self, upto: int) -> None:
        """A write holding every change up to ``upto`` committed."""
        self.saved = max(self.saved, upto)
        done = [cb for change, cb in self._waiters if change <= self.saved]
        self._waiters = [(c, cb) for c, cb in self._waiters if c > self.saved]
        for callback in done:
            callback(True)

    def end(self) -> None:
        """The session ended: its unsaved changes never will be; tell their waiters."""
        self.bury()
        waiting, self._waiters = self._waiters, []
        for _, callback in waiting:
            callback(False)

    def bury(self) -> None:
        """Changes marked but never saved by the session that is ending can never be."""
        low = max([self.saved, self._base, *(high for _, high in self._dead)])
        if self.last > low:
            self._dead.append((low, self.last))
