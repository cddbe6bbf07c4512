"""The admin commands end to end on SQLite, Redis and PostgreSQL (real servers), in process.

The live holder is a ``LockerService`` in this process whose frames run on a thread:
``edit`` reaches it as a remote change it applies, ``restore`` and ``release`` wait for it
to save and release, and nothing it holds is overwritten. Every store keeps ten versions
per key (Redis keeps none unless told), for ``history`` and ``restore``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import Backend, open_backend
from sessionlocker import LockerService, Spec, Status
from sessionlocker.cli.main import main
from sessionlocker.core.locker import Locker
from sessionlocker.core.record import decode
from sessionlocker.stores.base import Store

#: Autosave every half second: on SQLite (no notifications) a holder sees a release
#: request or a remote change at its next autosave.
SPEC = Spec("players", dict, lease=2.0, autosave_period=0.5)


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path, history=10)
    yield made
    made.close()


@pytest.fixture
def url(backend: Backend) -> str:
    """The URL the commands are given: the test's own store, namespace included."""
    assert backend.url is not None
    return backend.url


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def cli(url: str, *args: str) -> list[str]:
    """The command line of an admin command on ``url``, namespace ``players``."""
    return [*args, "--store", url, "--namespace", "players"]


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def save(store: Store, key: str, data: dict[str, Any]) -> None:
    """Write ``data`` to ``key`` through a session, as a server would."""
    with LockerService(store, SPEC) as service, service.session(key) as locker:
        locker.data.clear()
        locker.data.update(data)
        locker.mark_changed()


def stored(store: Store, key: str) -> Any:
    versioned = store.read(f"players/{key}")
    assert versioned is not None
    return decode(versioned.value).data


class Holder:
    """A live server holding one key, its frames driven by a thread."""

    def __init__(self, store: Store, key: str) -> None:
        self.service = LockerService(store, SPEC)
        self.locker: Locker = self.service.locker(key)
        self.locker.acquire()
        assert self.service.run_until(lambda: self.locker.status is Status.LOADED, 10)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.run_until, args=(self.stop.is_set,))

    def __enter__(self) -> Holder:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.service.close()


def test_list_show_and_json(store: Store, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    save(store, "alice", {"gold": 5})
    save(store, "bob", {"gold": 1})
    with Holder(store, "alice") as holder:
        code, out, _ = run(capsys, cli(url, "list"))
        assert code == 0
        assert "alice" in out
        assert holder.service.lease_id in out
        assert "live" in out
        assert "2 records" in out
        code, out, _ = run(capsys, [*cli(url, "list", "b"), "--json"])
        assert code == 0
        assert [row["key"] for row in json.loads(out)] == ["bob"]
        code, out, _ = run(capsys, [*cli(url, "show", "alice"), "--json"])
        shown = json.loads(out)
        assert shown["data"] == {"gold": 5}
        assert shown["lock"]["session"] == holder.service.lease_id
        assert shown["lock"]["state"] == "live"
        assert len(shown["versions"]) >= 2
        code, out, _ = run(capsys, cli(url, "show", "bob"))
        assert code == 0
        assert '"gold": 1' in out
        assert "lock       free" in out


def test_edit_with_a_live_holder_is_a_remote_change(
    store: Store, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    save(store, "alice", {"gold": 5, "level": 1})
    holder = Holder(store, "alice")
    holder.locker.data["gold"] = 7  # unsaved in the holder when the edit arrives
    holder.locker.mark_changed()
    with holder:
        code, out, err = run(capsys, [*cli(url, "edit", "alice"), "--patch", '{"level": 2}'])
        assert (code, err) == (0, "")
        assert "applied" in out
        assert stored(store, "alice") == {"gold": 7, "level": 2}  # the holder saved both
        assert holder.locker.status is Status.LOADED  # and still holds the record
    assert holder.locker.data == {"gold": 7, "level": 2}


def test_edit_in_the_editor_without_a_holder(
    store: Store, url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    save(store, "bob", {"gold": 1, "bag": {"a": 1, "b": 2}})
    script = (
        "import json,sys; p=sys.argv[1]; d=json.load(open(p)); "
        "d['bag']['b']=3; d['new']=True; json.dump(d, open(p,'w'))"
    )
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c {json.dumps(script)}")
    code, out, err = run(capsys, cli(url, "edit", "bob"))
    assert (code, err) == (0, "")
    assert "applied" in out
    assert stored(store, "bob") == {"gold": 1, "bag": {"a": 1, "b": 3}, "new": True}
    versioned = store.read("players/bob")
    assert versioned is not None
    record = decode(versioned.value)
    assert record.lock is None
    assert record.inbox == ()


def test_restore_waits_for_a_live_holder(
    store: Store, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    save(store, "alice", {"gold": 1})
    save(store, "alice", {"gold": 2})
    code, out, _ = run(capsys, [*cli(url, "history", "alice"), "--json"])
    assert code == 0
    versions = json.loads(out)
    old = next(v["revision"] for v in versions if v["data"] == {"gold": 1})
    holder = Holder(store, "alice")
    holder.locker.data["gold"] = 3  # unsaved: the holder must save it before the restore
    holder.locker.mark_changed()
    with holder:
        code, out, err = run(capsys, cli(url, "restore", "alice", str(old)))
        assert (code, err) == (0, "")
        assert holder.locker.status is Status.IDLE  # it saved and released; nothing lost
    assert holder.locker.error is None
    assert stored(store, "alice") == {"gold": 1}
    code, out, _ = run(capsys, [*cli(url, "history", "alice"), "--json"])
    assert [v["data"] for v in json.loads(out)][:2] == [{"gold": 1}, {"gold": 3}]


def test_history_shows_times_and_restore_takes_a_time(
    store: Store, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    save(store, "alice", {"gold": 1})
    code, out, _ = run(capsys, [*cli(url, "history", "alice"), "--json"])
    first = json.loads(out)[0]  # the save that released {"gold": 1}
    assert first["data"] == {"gold": 1}
    assert first["written"].endswith("Z")
    assert first["epoch"] == 1
    save(store, "alice", {"gold": 2})
    code, out, err = run(capsys, cli(url, "history", "alice"))
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("WRITTEN (UTC)")
    assert first["written"] in out
    code, out, _ = run(capsys, [*cli(url, "history", "alice", "--after", first["written"])])
    assert first["written"] not in out  # strictly after
    assert '{"gold": 2}' in out
    code, out, _ = run(capsys, [*cli(url, "history", "alice", "--limit", "1"), "--json"])
    assert [row["data"] for row in json.loads(out)] == [{"gold": 2}]
    code, out, err = run(capsys, cli(url, "restore", "alice", "--at", first["written"]))
    assert (code, err) == (0, "")
    assert f"data of revision {first['revision']} restored" in out
    assert stored(store, "alice") == {"gold": 1}
    code, _, err = run(capsys, cli(url, "restore", "alice", "--at", "2000-01-01T00:00Z"))
    assert code == 1
    assert "no history entry" in err
    code, _, err = run(capsys, cli(url, "restore", "alice", "--at", "2026-12-01T10:00"))
    assert code == 2
    assert "time zone" in err


def test_release_waits_and_steal_takes(
    store: Store, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    save(store, "alice", {"gold": 1})
    holder = Holder(store, "alice")
    holder.locker.data["gold"] = 4
    holder.locker.mark_changed()
    with holder:
        code, out, err = run(capsys, cli(url, "release", "alice"))
        assert (code, err) == (0, "")
        assert "released by" in out
        assert holder.locker.status is Status.IDLE
    assert stored(store, "alice") == {"gold": 4}
    with Holder(store, "alice") as holder:
        code, _, err = run(capsys, [*cli(url, "release", "alice"), "--steal"])
        assert code == 2  # no terminal to confirm on, and no --yes
        assert "--yes" in err
        code, out, err = run(capsys, [*cli(url, "release", "alice"), "--steal", "--yes"])
        assert (code, err) == (0, "")
        versioned = store.read("players/alice")
        assert versioned is not None
        assert decode(versioned.value).lock is None


def test_send_export_import(
    store: Store, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save(store, "alice", {"gold": 1})
    save(store, "bob", {"gold": 2})
    code, out, _ = run(capsys, cli(url, "send", "alice", "gift", '{"gold": 10}'))
    assert code == 0
    versioned = store.read("players/alice")
    assert versioned is not None
    assert [m.kind for m in decode(versioned.value).inbox] == ["gift"]
    dump = tmp_path / "dump.jsonl"
    code, out, err = run(capsys, [*cli(url, "export"), "--out", str(dump)])
    assert code == 0
    assert "export: 2/2 records" in err
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [line["key"] for line in lines] == ["alice", "bob"]
    target = [*cli(url, "import"), "--in", str(dump), "--json"]
    target[target.index("players")] = "copies"
    code, out, _ = run(capsys, target)
    assert json.loads(out) == {"imported": 2, "skipped": 0}
    code, out, _ = run(capsys, target)
    assert json.loads(out) == {"imported": 0, "skipped": 2}
    copy = store.read("copies/bob")
    assert copy is not None
    assert decode(copy.value).data == {"gold": 2}


def test_bad_input_writes_nothing(
    store: Store, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save(store, "alice", {"gold": 1})
    before = store.read("players/alice")
    cases = [
        (cli(url, "show", "nobody"), 1, "no record 'nobody'"),
        ([*cli(url, "edit", "alice"), "--patch", "{oops"], 2, "--patch is not JSON"),
        ([*cli(url, "edit", "nobody"), "--patch", "{}"], 1, "no record"),
        (cli(url, "restore", "alice", "x"), 2, "REVISION is a whole number"),
        (cli(url, "restore", "alice", "999999"), 2, "no kept revision 999999"),
        (cli(url, "restore", "alice"), 2, "either REVISION or --at"),
        ([*cli(url, "history", "alice"), "--before", "yesterday"], 2, "not an ISO 8601"),
        (cli(url, "send", "alice", "gift", "[1,"), 2, "BODY is not JSON"),
        (cli("sqlite:///no/such/dir/x.db", "list"), 2, "no such store file: no/such/dir/x.db"),
        (cli("sqlite:///no/such/dir/x.db", "release", "alice"), 2, "does not exist"),
        (cli("postgresql://127.0.0.1:1/none?connect_timeout=1", "list"), 1, "store"),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "carol", "record": {"format": 1, "data": {}}}\nnot json\n')
    cases.append(([*cli(url, "import"), "--in", str(bad)], 2, "line 2: not JSON"))
    for argv, expected, words in cases:
        code, out, err = run(capsys, argv)
        assert (code, out) == (expected, ""), argv
        assert words in err, (argv, err)
    assert store.read("players/alice") == before
    assert store.read("players/carol") is None
