"""Logs: one logger per component, the key and session on every line, no data, no secrets.

A whole lifecycle (save, handoff, takeover, lost lock, refused record, purchases,
injected store errors, an unreachable server) runs on a store opened from a URL with
a password, over data holding a marker string; then every line the library logged is
checked: it names its key and session, and neither the marker nor the password is in
it (nor in any traceback, nor in a store's or service's ``repr``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import drive, load, server_url
from servers import RedisServer
from sessionlocker import (
    LockerService,
    LockUnavailable,
    Purchaser,
    SessionLockerError,
    Spec,
    Status,
    open_store,
)
from sessionlocker.core.locker import Locker

MARKER = "MARKER-7f3a-data-must-not-be-logged"
PASSWORD = "pw-9c1e-must-not-be-logged"
FAST = {"lease": 0.6, "autosave_period": 0.2, "force_timeout": 2.0, "poll_period": 0.02}
PER_LOCKER = ("sessionlocker.locker", "sessionlocker.purchases")


def spec() -> Spec:
    return Spec("players", lambda: {"coins": 0, "note": ""}, **FAST)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(URL of a live store with a password where the backend takes one, URL of a dead one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/l.db", None  # no server to be unreachable
    elif request.param == "postgresql":
        url = server_url("postgresql")
        # The test server trusts 127.0.0.1, so it accepts (and ignores) any password.
        with_password = url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
        table = f"t{uuid.uuid4().hex[:10]}"
        dead = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/nowhere?connect_timeout=1"
        yield f"{with_password}?table={table}", dead
    else:
        server = RedisServer("--requirepass", PASSWORD)
        server.start()
        try:
            live = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0?prefix=l{uuid.uuid4().hex[:8]}/"
            yield live, f"redis://:{PASSWORD}@127.0.0.1:1/0?timeout=0.5"
        finally:
            server.stop()


def save_marker(service: LockerService, locker: Locker) -> None:
    saved: list[bool] = []
    locker.data["note"] = MARKER
    locker.when_saved(locker.mark_changed(), saved.append)
    locker.force_save()
    drive([service], lambda: bool(saved))


def lifecycle(live: str, dead: str | None) -> list[LockerService]:
    """Everything that logs, on ``live``; returns the services (closed) that ran it."""
    a, b, frozen = (LockerService(live, spec()) for _ in range(3))
    held = load(a, "h")
    save_marker(a, held)
    wanting = b.locker("h")
    wanting.acquire("force")  # a handoff: A saves and releases on B's request
    drive([a, b], lambda: wanting.status is Status.LOADED)
    stale = load(frozen, "t")
    save_marker(frozen, stale)
    taking = load(b, "t")  # frozen runs no frames: its lease lapses, B takes over
    assert taking.status is Status.LOADED
    stale.force_save()
    drive([frozen], lambda: stale.status is Status.LOST)
    raw = open_store(live)
    raw.write("players/bad", f'{{"format": 1, "data": "{MARKER}'.encode(), None)
    raw.close()
    assert load(b, "bad").status is Status.FAILED  # refused: corrupt
    purchaser = Purchaser(b, lambda data, receipt: data.update(note=MARKER))
    receipt = {"purchase_id": "p1", "product_id": "gems", "buyer": "h", "user_data": MARKER}
    assert purchaser.process(receipt) == "granted"
    assert purchaser.process({**receipt, "buyer": "away"}) == "not_processed_yet"
    faulty = LockerService(f"{live}{'&' if '?' in live else '?'}fail=0.3&seed=4", spec())
    with faulty.session("f", timeout=20) as locker:
        save_marker(faulty, locker)
    services = [a, b, frozen, faulty]
    if dead is not None:
        unreachable = LockerService(dead, spec())
        with pytest.raises((LockUnavailable, SessionLockerError)):
            with unreachable.session("x", timeout=1.5):
                pass
        services.append(unreachable)
    for service in services:
        assert PASSWORD not in repr(service)
        assert PASSWORD not in repr(service.store)
        service.close(timeout=3)
    return services


def test_every_line_names_key_and_session_and_leaks_nothing(
    urls: tuple[str, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    live, dead = urls
    with caplog.at_level(logging.DEBUG, logger="sessionlocker"):
        services = lifecycle(live, dead)
    sessions = {service.lease_id for service in services}
    ours = [r for r in caplog.records if r.name.startswith("sessionlocker")]
    assert ours
    assert MARKER not in caplog.text
    assert PASSWORD not in caplog.text
    for record in ours:
        line = record.getMessage()
        assert MARKER not in line
        assert PASSWORD not in line
        if record.name in PER_LOCKER or record.name == "sessionlocker.service":
            assert record.session in sessions, line  # type: ignore[attr-defined]
            assert f"session={record.session}" in line  # type: ignore[attr-defined]
        if record.name in PER_LOCKER:
            assert f"key={record.key}" in line  # type: ignore[attr-defined]
            assert record.key.startswith("players/"), line  # type: ignore[attr-defined]
    said = {
        (r.name, r.levelno, r.getMessage().partition(" session=")[2].partition(" ")[2])
        for r in ours
    }
    expected = [
        ("sessionlocker.locker", logging.INFO, "loaded after its holder released it on request"),
        ("sessionlocker.locker", logging.INFO, "saved and released on another session's request"),
        (
            "sessionlocker.locker",
            logging.WARNING,
            "took the lock from a session that did not release it",
        ),
        (
            "sessionlocker.locker",
            logging.ERROR,
            "refused the stored record (corrupt, CorruptRecord)",
        ),
        ("sessionlocker.purchases", logging.INFO, "purchase p1 of product gems granted"),
        ("sessionlocker.purchases", logging.DEBUG, "purchase p1 of product gems deferred"),
    ]
    for line in expected:
        assert line in said, line
    names = {r.name for r in ours}
    assert {"sessionlocker.locker", "sessionlocker.service", "sessionlocker.purchases"} <= names
    lost = [r for r in ours if "lost the lock" in r.getMessage()]
    assert lost
    assert all(r.levelno == logging.WARNING for r in lost)
    failures = [
        r for r in ours if r.name == "sessionlocker.service" and "failed (" in r.getMessage()
    ]
    assert failures  # the injected faults and the unreachable server
    assert all(r.key is None or r.key.startswith("players/") for r in failures)  # type: ignore[attr-defined]
