"""A frame-loop game server: players join, play, hop to another server, and leave.

Two servers (two ``LockerService`` sessions) share one store, as two processes of a
game would. Each runs the easy API from its own frame loop: ``update()`` once a frame,
``start_session`` when a player joins, ``end_session`` when they leave. A player who
hops joins the second server with ``force``: the first server sees the release
request, saves and lets go, and the second loads the saved data.

Run: ``python examples/game_server.py [STORE_URL]`` (default: a temporary SQLite file).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sessionlocker import EasyProfile, EasyStore, LoadMode, LockerService, Spec

#: A short autosave so a hop is quick on SQLite, which has no notifications: the holder
#: sees the release request at its next save. Redis and PostgreSQL notify at once.
SPEC = Spec("players", lambda: {"coins": 0, "visits": []}, autosave_period=0.3)
FRAME = 1 / 60


class GameServer:
    """One server: its service, its profiles, and what its players do each frame."""

    def __init__(self, name: str, store_url: str) -> None:
        self.name = name
        self.service = LockerService(store_url, SPEC)
        self.profiles = EasyStore(self.service)

    def join(self, player: str, mode: LoadMode = LoadMode.REPEAT) -> EasyProfile:
        profile = self.profiles.start_session(player, mode)
        profile.on("loaded", lambda p: p.edit(lambda data: data["visits"].append(self.name)))
        return profile

    def frame(self) -> None:
        for profile in self.profiles.profiles():
            if profile.is_loaded():
                profile.edit(lambda data: data.update(coins=data["coins"] + 1))
        self.service.update()

    def leave(self, player: str) -> None:
        self.profiles.end_session(player)


def run_frames(servers: list[GameServer], until: Callable[[], bool], limit: float = 10.0) -> None:
    """Run every server's frame loop until ``until()`` is true."""
    deadline = time.monotonic() + limit
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("the game did not get there in time")
        for server in servers:
            server.frame()
        time.sleep(FRAME)


def main(store_url: str) -> dict[str, object]:
    lobby, arena = GameServer("lobby", store_url), GameServer("arena", store_url)
    servers = [lobby, arena]
    alice, bob = lobby.join("alice"), lobby.join("bob")
    run_frames(servers, lambda: alice.is_loaded() and bob.is_loaded())
    run_frames(servers, lambda: alice.data["coins"] >= 10)
    print(f"alice plays in the lobby: {alice.data['coins']} coins")
    hopped = arena.join("alice", LoadMode.FORCE)  # alice hops; the lobby hands her over
    run_frames(servers, hopped.is_loaded)
    print(f"alice arrives in the arena with {hopped.data['coins']} coins")
    run_frames(servers, lambda: hopped.data["coins"] >= 20)
    arena.leave("alice")
    lobby.leave("bob")
    result = {"alice": dict(hopped.data), "bob": dict(bob.data)}
    for server in servers:
        server.service.close()
    print(f"left: {result}")
    return result


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(f"sqlite:///{Path(folder) / 'game.db'}")
