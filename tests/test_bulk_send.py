"""Bulk sends (``sessionlocker send --all`` / ``--keys-from``): one remote change to many
records, exactly once each, resumable. The sending loop on memory (with a live holder
applying the change), the command on SQLite (interrupted, then resumed)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from backends import fast_spec
from sessionlocker import LockerService, Message
from sessionlocker.cli import bulk
from sessionlocker.cli.main import main
from sessionlocker.core.locker import Locker
from sessionlocker.core.record import decode
from sessionlocker.stores import MemoryStore, Store, open_store

KEYS = ["k1", "k2", "k3", "k4", "k5"]


def create(store: Store, keys: list[str]) -> None:
    with LockerService(store, fast_spec("players", dict)) as service:
        for key in keys:
            with service.session(key) as locker:
                locker.data["gems"] = 0
                locker.mark_changed()


def inbox_ids(store: Store, key: str) -> list[str]:
    versioned = store.read(f"players/{key}")
    assert versioned is not None
    return [m.id for m in decode(versioned.value).inbox]


def a_bulk(bulk_id: str = "b1") -> bulk.Bulk:
    return bulk.new_bulk("gift", {"gems": 5}, "players", "all", bulk_id)


# ---------------------------------------------------------------- the loop, on memory


def test_a_live_holder_applies_a_bulk_change_once_even_when_it_is_sent_twice() -> None:
    store = MemoryStore()
    create(store, KEYS)
    holder = LockerService(store, fast_spec("players", dict))

    def gift(locker: Locker, message: Message) -> None:
        locker.data["gems"] += message.body["gems"]

    holder.on_message("gift", gift)
    lockers = [holder.locker(key) for key in KEYS[:2]]
    for locker in lockers:
        locker.acquire()
    assert holder.run_until(lambda: all(lk.is_available() for lk in lockers), timeout=10)
    sender = LockerService(store, fast_spec("players", dict))
    progress = io.StringIO()
    for _ in range(2):  # a rerun without the progress file: the ids make it harmless
        tally = bulk.send_all(
            sender, a_bulk(), [*KEYS, "ghost", "k1"], progress, done={}, report=lambda n: None
        )
        assert (tally.sent, tally.missing, tally.failed) == (5, 1, {})
        assert holder.run_until(lambda: all(lk.data["gems"] == 5 for lk in lockers), timeout=10)
    assert [lk.data["gems"] for lk in lockers] == [5, 5]  # applied once, not twice
    for key in KEYS[2:]:
        assert inbox_ids(store, key) == [f"b1/{key}"]  # queued once for the next load
    lines = [json.loads(line) for line in progress.getvalue().splitlines()]
    assert [line["key"] for line in lines[:6]] == [*KEYS, "ghost"]  # "k1" again is skipped
    assert lines[5]["result"] == "missing"
    sender.close()
    holder.close()


def test_keys_done_in_an_earlier_run_are_skipped() -> None:
    store = MemoryStore()
    create(store, KEYS)
    with LockerService(store, fast_spec("players", dict)) as sender:
        done = {"k1": "sent", "k2": "failed", "k3": "missing"}
        tally = bulk.send_all(
            sender, a_bulk(), KEYS, io.StringIO(), done=done, report=lambda n: None
        )
    assert (tally.already, tally.sent) == (1, 4)
    assert inbox_ids(store, "k1") == []


# ---------------------------------------------------------------- the command, on SQLite


@pytest.fixture
def url(tmp_path: Path) -> str:
    made = f"sqlite:///{tmp_path / 'bulk.db'}"
    store = open_store(made)
    create(store, KEYS)
    store.close()
    return made


def send(url: str, *args: str) -> list[str]:
    return ["send", *args, "--store", url, "--namespace", "players"]


def stored_ids(url: str, key: str) -> list[str]:
    store = open_store(url)
    try:
        return inbox_ids(store, key)
    finally:
        store.close()


def test_send_all_reaches_every_record_once(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = tmp_path / "p.progress"
    argv = send(url, "--all", "gift", '{"gems": 5}', "--id", "all1", "--progress", str(progress))
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary == {
        "bulk_id": "all1",
        "total": 5,
        "sent": 5,
        "already_sent": 0,
        "missing": 0,
        "failed": {},
    }
    assert "send: 5/5 records" in err
    for key in KEYS:
        assert stored_ids(url, key) == [f"all1/{key}"]
    head = json.loads(progress.read_text().splitlines()[0])
    assert head == {
        "bulk_id": "all1",
        "kind": "gift",
        "body": {"gems": 5},
        "namespace": "players",
        "keys": "all",
    }


def test_an_interrupted_send_resumes_without_sending_twice(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# players to gift\nk1\nk2\n\nk3\nghost\nk4\nk5\n")
    progress = tmp_path / "p.progress"
    argv = send(url, "--keys-from", str(keys), "gift", '{"gems": 5}', "--progress", str(progress))
    real_send = LockerService.send
    calls: list[str] = []

    def crash_after_the_third(service: LockerService, key: str, *args: Any, **kw: Any) -> str:
        message_id = real_send(service, key, *args, **kw)
        calls.append(key)
        if len(calls) == 3:  # delivered, but the run dies before noting it
            raise KeyboardInterrupt
        return message_id

    monkeypatch.setattr(LockerService, "send", crash_after_the_third)
    assert main(argv) == 130
    monkeypatch.undo()
    capsys.readouterr()
    noted = [json.loads(line)["key"] for line in progress.read_text().splitlines()[1:]]
    assert noted == ["k1", "k2"]
    assert main(argv) == 2  # a new run would start again: refused while the file is there
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["already_sent"], summary["sent"], summary["missing"]) == (2, 3, 1)
    bulk_id = summary["bulk_id"]
    for key in KEYS:
        assert stored_ids(url, key) == [f"{bulk_id}/{key}"]  # k3 too: once


def test_a_refused_record_is_counted_and_the_rest_is_sent(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(url)
    store.write("players/broken", b'{"format": 1, "data": ', None)
    store.close()
    progress = str(tmp_path / "p.progress")
    assert main([*send(url, "--all", "gift", "{}", "--progress", progress), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["sent"] == 5
    assert list(summary["failed"]) == ["broken"]
    assert "CorruptRecord" in summary["failed"]["broken"]


@pytest.mark.parametrize(
    "case",
    [
        (["--all", "k1", "gift", "{}"], "no KEY"),
        (["k1", "gift", "{}", "--resume"], "for a bulk send"),
        (["--all", "gift", "{}", "--resume"], "no progress file"),
        (["--all", "gift", "{}", "--id", "a/b"], "--id"),
        (["--keys-from", "-", "gift", "{}"], "printable"),
    ],
)
def test_bad_bulk_command_lines_send_nothing(
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[list[str], str],
) -> None:
    extra, message = case
    monkeypatch.setattr("sys.stdin", io.StringIO("k1\n\x00\n"))  # a bad key after a good one
    monkeypatch.chdir(tmp_path)
    assert main(send(url, *extra)) == 2
    assert message in capsys.readouterr().err
    for key in KEYS:
        assert stored_ids(url, key) == []


def test_resuming_another_send_is_refused(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = str(tmp_path / "p.progress")
    assert main(send(url, "--all", "gift", '{"gems": 5}', "--progress", progress)) == 0
    assert main(send(url, "--all", "gift", '{"gems": 6}', "--progress", progress, "--resume")) == 2
    assert "another send" in capsys.readouterr().err
