"""Erasing a user: every record listing them goes, each under its lock; nothing else moves."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, open_backend
from sessionlocker import LockerService, Spec
from sessionlocker.cli.main import main
from sessionlocker.erase import ERASED, LOCKED, erase_user, erased_at
from sessionlocker.stores import Store
from sessionlocker.stores.base import KeepsHistory

HOLDER = Path(__file__).parent / "procs" / "user_holder.py"


def spec() -> Spec:
    return Spec("players", dict, lease=2.0, autosave_period=0.2, poll_period=0.05)


@pytest.fixture(params=["sqlite", "redis", "redis-cluster", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A store every process can open by its URL (server backends: a namespace of its own)."""
    made = open_backend(request.param, tmp_path)
    yield made
    made.close()


@pytest.fixture
def url(backend: Backend) -> str:
    assert backend.url is not None
    return backend.url


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def make(service: LockerService, key: str, *user_ids: str) -> None:
    with service.session(key) as locker:
        locker.data["secret"] = f"data-of-{key}"
        for user_id in user_ids:
            locker.add_user_id(user_id)


def snapshot(store: Store, keys: list[str]) -> dict[str, tuple[bytes, int] | None]:
    """Each key's stored bytes and revision (None when absent)."""
    found = {}
    for key in keys:
        stored = store.read(f"players/{key}")
        found[key] = None if stored is None else (stored.value, stored.revision)
    return found


class Holder:
    """``procs/user_holder.py`` holding one key in its own process."""

    def __init__(self, url: str, key: str, user_id: str) -> None:
        command = [sys.executable, str(HOLDER), "--store", url, "--key", key, "--user", user_id]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def next_event(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"holder exited: {self.stderr()}"
        event: dict[str, object] = json.loads(line)
        return event

    def stderr(self) -> str:
        self.process.kill()
        return self.close()

    def finish(self) -> int:
        """Wait for the holder to exit by itself; its exit code."""
        code = self.process.wait(timeout=20)
        self.close()
        return code

    def close(self) -> str:
        """Kill the holder if it still runs, close its pipes; what it wrote on stderr."""
        if self.process.poll() is None:
            self.process.kill()
        _, err = self.process.communicate(timeout=20)
        return err


def test_erase_three_records_one_held_by_a_live_process(
    url: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sessionlocker")
    holder = Holder(url, "p1", "u1")
    try:
        assert holder.next_event() == {"event": "ready", "saved": [True]}
        with LockerService(store, spec()) as service:
            make(service, "guild", "u1", "u2")
            make(service, "house", "u3", "u1")
            make(service, "p2", "u2")
            make(service, "p3")
            make(service, "guild2", "u2", "u3")
            others = ["p2", "p3", "guild2"]
            before = snapshot(store, others)
            assert service.keys_for_user("u1") == ["guild", "house", "p1"]

            kept = store.history("players/p2") if isinstance(store, KeepsHistory) else []
            report = erase_user(service, "u1", timeout=20)

            assert [(k.key, k.result) for k in report.keys] == [
                ("guild", ERASED),
                ("house", ERASED),
                ("p1", ERASED),
            ]
            assert report.ok
            assert not [r for r in caplog.records if "lost" in r.getMessage()]  # none lost
            assert holder.next_event() == {"event": "ended", "status": "idle"}
            assert snapshot(store, ["guild", "house", "p1"]) == dict.fromkeys(
                ["guild", "house", "p1"]
            )
            assert snapshot(store, others) == before
            if isinstance(store, KeepsHistory):  # the kept versions are erased too
                assert store.history("players/guild") == []
                assert store.history("players/p1") == []
                assert store.history("players/p2") == kept  # others' versions stay
            assert service.keys_for_user("u1") == []
            assert service.keys_for_user("u2") == ["guild2", "p2"]
            line = json.loads(report.audit_line())
            assert line["user_id"] == "u1"
            assert line["event"] == "erase_user"
            assert [k["key"] for k in line["keys"]] == ["guild", "house", "p1"]
            assert "data-of" not in report.audit_line()  # never the data
        assert holder.finish() == 0
    finally:
        holder.close()


def test_erase_refuses_a_lock_whose_holder_never_releases(url: str, store: Store) -> None:
    # The hung holder: its lease is long and alive, but nothing drives its frames, so
    # the release request is never answered.
    hung_spec = Spec("players", dict, lease=60.0, autosave_period=0.2, poll_period=0.05)
    with LockerService(store, hung_spec) as hung, LockerService(store, spec()) as service:
        make(service, "free", "u1")
        locker = hung.locker("stuck")
        locker.acquire()
        assert hung.run_until(locker.is_available, timeout=10)
        locker.add_user_id("u1")
        locker.force_save()
        assert hung.run_until(lambda: not locker.changes_pending, timeout=10)
        before = snapshot(store, ["stuck"])

        report = erase_user(service, "u1", timeout=1.0)

        results = {k.key: k.result for k in report.keys}
        assert results == {"free": ERASED, "stuck": LOCKED}
        assert not report.ok
        assert "stuck" in report.audit_line()
        stored = snapshot(store, ["stuck"])["stuck"]
        assert stored is not None
        assert before["stuck"] is not None
        assert stored[0] == before["stuck"][0] or b'"release_requests":[]' in stored[0]
        assert service.keys_for_user("u1") == ["stuck"]
        assert hung.run_until(locker.is_available, timeout=5)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sessionlocker", "erase", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_erase_command_reports_audits_and_refuses(url: str, store: Store, tmp_path: Path) -> None:
    hung_spec = Spec("players", dict, lease=60.0, autosave_period=0.2, poll_period=0.05)
    audit = tmp_path / "audit.jsonl"
    common = ["--store", url, "--namespace", "players", "--user", "u1", "--json"]
    with LockerService(store, hung_spec) as hung, LockerService(store, spec()) as service:
        make(service, "free", "u1")
        make(service, "other", "u2")
        before = snapshot(store, ["other"])
        locker = hung.locker("stuck")
        locker.acquire()
        assert hung.run_until(locker.is_available, timeout=10)
        locker.add_user_id("u1")
        locker.force_save()
        assert hung.run_until(lambda: not locker.changes_pending, timeout=10)

        unconfirmed = cli(*common)
        assert unconfirmed.returncode == 2, unconfirmed.stderr
        assert "--yes" in unconfirmed.stderr
        assert service.keys_for_user("u1") == ["free", "stuck"]

        refused = cli(*common, "--yes", "--timeout", "1", "--audit", str(audit))
        assert refused.returncode == 1, refused.stderr
        report = json.loads(refused.stdout)
        assert {k["key"]: k["result"] for k in report["keys"]} == {
            "free": "erased",
            "stuck": "locked",
        }
        assert service.keys_for_user("u1") == ["stuck"]

        locker.release()
        assert hung.run_until(lambda: hung.get("stuck") is None, timeout=10)
        done = cli(*common, "--yes", "--audit", str(audit))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["keys"] == [
            {"key": "stuck", "result": "erased", "detail": ""}
        ]
        assert service.keys_for_user("u1") == []
        assert snapshot(store, ["other"]) == before
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(line["user_id"], line["ok"]) for line in lines] == [("u1", False), ("u1", True)]
    assert all(line["by"] and line["at"] for line in lines)
    nothing = cli(*common, "--yes")
    assert nothing.returncode == 0
    assert json.loads(nothing.stdout)["keys"] == []


def test_history_says_a_key_was_erased(
    url: str, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    with LockerService(store, spec()) as service:
        make(service, "p1", "u1")
        report = erase_user(service, "u1", timeout=10)
        assert [(k.key, k.result) for k in report.keys] == [("p1", ERASED)]
        mark = erased_at(store, "players/p1")
        assert mark is not None
        assert mark[1] == service.lease_id
        assert erased_at(store, "players/p2") is None
        assert service.keys_for_user("u1") == []
        assert list(store.keys("players/")) == []  # the mark lives outside the namespace
    code = main(["history", "p1", "--store", url, "--namespace", "players"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert "'p1' was erased at" in err
    assert "is history on" not in err
