"""What the simulation stores, under which keys, and with which timings.

Each player record's data is ``{"count": n, "log": [[server, 1, epoch], ...], "items": [...],
"grants": [...], "bonuses": [...], "coins": c}``: every play change bumps ``count`` and
appends who made it, the new count and the lock epoch it was made in. So a confirmed change
``(server, n)`` must sit at ``log[n - 1]`` of the final record, and a lost write shows up as
a missing or different entry there. ``grants`` lists every purchase id granted to the
player (once each), ``bonuses`` every admin message applied, and ``items`` the unique item
ids the player owns (one per granted purchase, moved by trades).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessionlocker.core.spec import Spec

__all__ = ["NAMESPACE", "Timings", "fresh_player", "player_keys"]

#: The namespace of every simulated record.
NAMESPACE = "players"


def player_keys(count: int, prefix: str = "") -> list[str]:
    """The keys of ``count`` players: ``<prefix>player-1`` ... ``<prefix>player-<count>``."""
    return [f"{prefix}player-{number}" for number in range(1, count + 1)]


def fresh_player() -> dict[str, Any]:
    """The data of a player never stored before."""
    return {"count": 0, "log": [], "items": [], "grants": [], "bonuses": [], "coins": 0}


@dataclass(frozen=True)
class Timings:
    """Short timings, so that a takeover after a crash takes about a second.

    ``force_timeout`` is longer than ``lease`` on purpose: a dead holder's locks are
    then taken over because its lease expired, not because a release request timed out.
    """

    lease: float = 1.0
    autosave: float = 0.2
    poll: float = 0.05
    force_timeout: float = 5.0

    def spec(self) -> Spec:
        """The ``Spec`` of the player records with these timings."""
        return Spec(
            NAMESPACE,
            fresh_player,
            lease=self.lease,
            autosave_period=self.autosave,
            poll_period=self.poll,
            force_timeout=self.force_timeout,
        )

    def arguments(self) -> list[str]:
        """These timings as worker command-line options."""
        return [
            f"--lease={self.lease}",
            f"--autosave={self.autosave}",
            f"--poll={self.poll}",
            f"--force-timeout={self.force_timeout}",
        ]
