"""A child process for tests/test_handoff.py: hold one key on a notifying store.

Run as ``python tests/procs/notified.py URL KEY``. Autosave, polling and the force
timeout are all a minute long, so anything that happens within seconds was brought by
a store notification. Reports on stdout, one JSON object per line:
``loaded``, ``note`` (a remote change applied, with its body), ``released``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from sessionlocker import Locker, LockerService, Spec
from sessionlocker.core.record import Message

SLOW = Spec(
    "handoff",
    lambda: {"notes": []},
    autosave_period=60.0,
    poll_period=60.0,
    force_timeout=60.0,
    lease=30.0,
)


def say(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "at": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def main() -> None:
    url, key = sys.argv[1], sys.argv[2]
    with LockerService(url, SLOW) as service:

        def note(locker: Locker, message: Message) -> None:
            locker.data["notes"].append(message.body)
            say("note", body=message.body)

        service.on_message("note", note)
        locker = service.locker(key)
        locker.on("released", lambda _: say("released"))
        locker.on("replaced", lambda _: say("released"))
        locker.acquire()
        service.run_until(lambda: locker.status.value == "loaded", 30)
        say("loaded")
        service.run_until(lambda: locker.status.value == "idle", 120)


if __name__ == "__main__":
    main()
