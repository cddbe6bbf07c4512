"""Why a save happens (``Locker.save_reason``, ``final_save``) and what it wrote
(``Locker.last_saved``), on memory and SQLite: autosave, forced, release, handoff to
another server, service shutdown, and the one final save per lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, drive, fast_spec, load, open_backend
from sessionlocker import EasyStore, Locker, LockerService, SaveReason, Snapshot, Status


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path)
    yield made
    made.close()


class Audit:
    """Listens to a locker: the reason of each ``before_save``, the snapshot of each
    ``saved``, and a final audit line written into the data at the final save."""

    def __init__(self, locker: Locker) -> None:
        self.reasons: list[tuple[SaveReason | None, bool]] = []
        self.saved: list[Snapshot] = []
        locker.on("before_save", self.before_save)  # one-argument callbacks, as ever
        locker.on("saved", self.after_save)

    def before_save(self, locker: Locker) -> None:
        self.reasons.append((locker.save_reason, locker.final_save))
        if locker.final_save:
            locker.data["log"].append(f"end:{locker.save_reason}")
            locker.mark_changed()

    def after_save(self, locker: Locker) -> None:
        assert locker.last_saved is not None
        self.saved.append(locker.last_saved)


def test_autosave_forced_and_release_reasons_and_snapshots(backend: Backend) -> None:
    with LockerService(backend.store, fast_spec()) as service:
        locker = load(service, "p1")
        audit = Audit(locker)
        locker.data["log"].append("a")
        locker.mark_changed()
        drive([service], lambda: bool(audit.saved))  # the autosave (period 0.2 s)
        assert audit.reasons[-1] == (SaveReason.AUTOSAVE, False)
        first = audit.saved[-1]
        assert (first.reason, first.final) == (SaveReason.AUTOSAVE, False)
        assert first.data == {"log": ["a"]}
        assert first.lock is not None
        assert first.lock.session == service.lease_id
        assert first.epoch == locker.token
        stored = backend.store.read("players/p1")
        assert stored is not None
        assert (first.revision, first.size) == (stored.revision, len(stored.value))

        locker.data["log"].append("b")
        locker.set_tag("level", 2)
        locker.force_save()
        drive([service], lambda: len(audit.saved) == 2)
        assert audit.reasons[-1] == (SaveReason.FORCED, False)
        assert audit.saved[-1].reason is SaveReason.FORCED
        assert dict(audit.saved[-1].tags) == {"level": 2}  # metadata as written

        locker.release()
        drive([service], lambda: locker.status is Status.IDLE)
    assert audit.reasons[-1] == (SaveReason.RELEASE, True)
    last = audit.saved[-1]
    assert (last.reason, last.final, last.lock) == (SaveReason.RELEASE, True, None)
    assert last.data == {"log": ["a", "b", "end:release"]}
    assert locker.last_saved is last
    assert [s.final for s in audit.saved].count(True) == 1


def test_a_handoff_is_announced_before_the_last_save(backend: Backend) -> None:
    with (
        LockerService(backend.store, fast_spec()) as first,
        LockerService(backend.store, fast_spec()) as second,
    ):
        holder = load(first, "p1")
        audit = Audit(holder)
        holder.data["log"].append("played")
        holder.mark_changed()
        taker = second.locker("p1")
        taker.acquire("force")  # a release request: the holder hands the record over
        drive([first, second], lambda: taker.status is Status.LOADED)
        assert holder.status is Status.IDLE
        finals = [reason for reason, final in audit.reasons if final]
        assert finals == [SaveReason.HANDOFF]  # announced once, before the write
        last = audit.saved[-1]
        assert (last.reason, last.final, last.lock) == (SaveReason.HANDOFF, True, None)
        assert taker.data == {"log": ["played", "end:handoff"]}  # the audit line went with it


def test_shutdown_is_the_reason_when_the_service_closes(backend: Backend) -> None:
    service = LockerService(backend.store, fast_spec())
    locker = load(service, "p1")
    audit = Audit(locker)
    assert service.close().released
    assert audit.reasons[-1] == (SaveReason.SHUTDOWN, True)
    assert [reason for reason, final in audit.reasons if final] == [SaveReason.SHUTDOWN]
    assert audit.saved[-1].reason is SaveReason.SHUTDOWN
    assert audit.saved[-1].final is True
    assert audit.saved[-1].data == {"log": ["end:shutdown"]}


def test_a_new_session_starts_with_no_last_saved(backend: Backend) -> None:
    with LockerService(backend.store, fast_spec()) as service:
        with service.session("p1", timeout=10) as player:
            assert player.last_saved is None
            assert player.save_reason is None
        assert player.last_saved is not None
        player.acquire()
        assert player.last_saved is None
        drive([service], lambda: player.status is Status.LOADED)
        player.release()
        drive([service], lambda: player.status is Status.IDLE)


def test_reasons_say_which_end_the_lock() -> None:
    ending = {reason for reason in SaveReason if reason.ends_lock}
    assert ending == {SaveReason.RELEASE, SaveReason.HANDOFF, SaveReason.SHUTDOWN}


def test_the_easy_profile_shows_the_same(backend: Backend) -> None:
    with LockerService(backend.store, fast_spec()) as service:
        profile = EasyStore(service).start_session("p1")
        reasons: list[tuple[SaveReason | None, bool]] = []
        profile.on("before_save", lambda p: reasons.append((p.save_reason, p.final_save)))
        drive([service], profile.is_loaded)
        profile.end_session()
        drive([service], lambda: not profile.is_active() and profile.last_saved is not None)
        assert reasons == [(SaveReason.RELEASE, True)]
        assert profile.last_saved is not None
        assert profile.last_saved.final is True
