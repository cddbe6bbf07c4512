"""A child process for tests/test_erase.py: hold one key of a user and answer requests.

Run as ``python tests/procs/user_holder.py --store URL --key K --user U``. It loads the
key (namespace ``players``), adds the user id, changes the data and waits for the save
to commit, then says ``{"event": "ready"}`` and keeps driving frames, as a game server
does, until its locker ends (a release request from another session makes it save and
release), then says ``{"event": "ended", "status": ...}`` and exits. It also exits when
its parent goes away or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from sessionlocker import LockerService, Spec, Status


def say(event: str, **fields: object) -> None:
    """Report one event to the test."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    spec = Spec("players", dict, lease=2.0, autosave_period=0.2, poll_period=0.05)
    parent, deadline = os.getppid(), time.monotonic() + args.max_seconds
    with LockerService(args.store, spec) as service:
        locker = service.locker(args.key)
        locker.acquire()
        if not service.run_until(locker.is_available, timeout=20):
            say("failed", status=locker.status.value)
            return
        locker.add_user_id(args.user)
        locker.data["held_by"] = "child"
        saved: list[bool] = []
        locker.when_saved(locker.mark_changed(), saved.append)
        locker.force_save()
        service.run_until(lambda: bool(saved), timeout=20)
        say("ready", saved=saved)
        live = (Status.LOADED, Status.RELEASING)  # a handoff goes through releasing
        while locker.status in live and os.getppid() == parent:
            if time.monotonic() > deadline:
                break
            service.run_until(lambda: locker.status not in live, timeout=0.2)
        say("ended", status=locker.status.value)


if __name__ == "__main__":
    main()
