"""Edit one profile safely while a game server may be holding it.

An admin fix (give a player coins, say) must not race the server that holds the
player: writing the record behind its back would be overwritten by its next save.
This script takes the lock the proper way, with ``force``: it writes a release
request, the holder saves and lets go, the script loads the saved data, edits it and
saves and releases it. If the holder does not let go within the force timeout (it
crashed), its lock is taken over; nothing it had saved is lost.

Run: ``python examples/edit_profile.py STORE_URL PLAYER COINS``.
"""

from __future__ import annotations

import argparse

from sessionlocker import LoadMode, LockerService, Spec

#: The same namespace and defaults as the game's (examples/game_server.py).
SPEC = Spec("players", lambda: {"coins": 0, "visits": []})


def give_coins(store_url: str, player: str, coins: int, timeout: float = 30.0) -> int:
    """Add ``coins`` to ``player``; returns their new balance once it is saved."""
    with (
        LockerService(store_url, SPEC) as service,
        service.session(player, LoadMode.FORCE, timeout=timeout) as profile,
    ):
        profile.data["coins"] += coins
        profile.mark_changed()
        balance: int = profile.data["coins"]
    return balance  # session() returned: the change is committed and the lock released


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_url")
    parser.add_argument("player")
    parser.add_argument("coins", type=int)
    args = parser.parse_args(argv)
    balance = give_coins(args.store_url, args.player, args.coins)
    print(f"{args.player} now has {balance} coins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
