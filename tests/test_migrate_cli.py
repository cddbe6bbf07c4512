"""`sessionlocker migrate` on 10,000 SQLite records of mixed versions, some held live."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sessionlocker import LockerService, Spec, Status
from sessionlocker.cli.main import main
from sessionlocker.core.record import Record, decode, encode
from sessionlocker.stores import SQLiteStore
from sessionlocker.testing import seed

SPEC_MODULE = textwrap.dedent(
    """
    from sessionlocker import Spec
    from sessionlocker.core.migrations import Migrations

    def to_v2(data):
        data["inventory"] = []

    def to_v3(data):
        if data.get("explode"):
            raise ValueError("cannot migrate this one")
        data["coins"] = data.pop("gold", 0)

    PLAYERS = Spec(
        "players", lambda: {"coins": 0, "inventory": []}, version=3,
        migrations=Migrations().step(1, to_v2).step(2, to_v3), lease=2.0,
    )
    """
)


def snapshot(store: SQLiteStore) -> dict[str, Any]:
    return {key: store.read(key) for key in store.keys("players/")}


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, SQLiteStore]:
    (tmp_path / "gamespec.py").write_text(SPEC_MODULE)
    store = SQLiteStore(tmp_path / "game.db")
    spec_v1 = Spec("players", dict)
    seed(store, spec_v1, {f"v1-{i}": {"gold": i} for i in range(6_000)}, version=1)
    seed(
        store,
        spec_v1,
        {f"v2-{i}": {"gold": i, "inventory": ["x"]} for i in range(2_000)},
        version=2,
    )
    seed(
        store, spec_v1, {f"v3-{i}": {"coins": i, "inventory": []} for i in range(1_940)}, version=3
    )
    for i in range(40):  # written by newer code, still loadable by version 3
        store.write(
            f"players/v4-{i}", encode(Record(data={"coins": i}, schema=4, compatible=3)), None
        )
    seed(store, spec_v1, {f"bad-{i}": {"gold": 1, "explode": True} for i in range(10)}, version=2)
    for i in range(10):
        store.write(f"players/corrupt-{i}", b"{not a record", None)
    return tmp_path, store


def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "sessionlocker",
        "migrate",
        "--store",
        f"sqlite:///{folder}/game.db",
    ]
    return subprocess.run(
        [*command, "--spec", "gamespec:PLAYERS", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_migrate_10000_records_with_some_locked_by_a_live_process(
    world: tuple[Path, SQLiteStore],
) -> None:
    folder, store = world
    live_spec = Spec("players", dict, version=1, lease=2.0)
    with LockerService(SQLiteStore(folder / "game.db"), live_spec) as live:
        held = [live.locker(f"v1-{i}") for i in range(25)]
        for locker in held:
            locker.acquire()
        assert live.run_until(lambda: all(h.status is Status.LOADED for h in held), 10)
        before = snapshot(store)
        assert len(before) == 10_000

        dry = run_cli(folder, "--dry-run", "--json")
        assert dry.returncode == 1, dry.stderr  # some records fail: newer, corrupt, raising
        planned = json.loads(dry.stdout)
        assert snapshot(store) == before  # the dry run wrote nothing

        done = run_cli(folder, "--json")
        summary = json.loads(done.stdout)
        assert done.returncode == 1
        assert "migrate: 10,000/10,000 records" in done.stderr  # progress, not a terminal
        assert summary == {**planned, "dry_run": False, "seconds": summary["seconds"]}
        assert summary["total"] == 10_000
        assert summary["migrated"] == 5_975 + 2_000
        assert summary["current"] == 1_940 + 40  # newer but compatible counts as current
        assert summary["locked"] == 25
        assert summary["failed"] == {"migration_error": 10, "corrupt": 10}

        after = snapshot(store)
        for i in range(6_000):
            record = decode(after[f"players/v1-{i}"].value)
            if i < 25:
                assert after[f"players/v1-{i}"] == before[f"players/v1-{i}"]  # held: untouched
            else:
                assert (record.schema, record.data) == (3, {"inventory": [], "coins": i})
        for key in [f"players/corrupt-{i}" for i in range(10)] + [
            f"players/bad-{i}" for i in range(10)
        ]:
            assert after[key] == before[key]
        for i in range(40):
            assert after[f"players/v4-{i}"] == before[f"players/v4-{i}"]


def test_a_newer_record_that_is_not_compatible_fails_as_newer_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "game.db")
    store.write("players/new", encode(Record(data={}, schema=5, compatible=5)), None)
    store.close()
    (tmp_path / "gamespec.py").write_text(SPEC_MODULE)
    result = run_cli(tmp_path, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed"] == {"newer_schema": 1}


def test_the_human_summary_and_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gamespec.py").write_text(SPEC_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    store = SQLiteStore(tmp_path / "game.db")
    seed(store, Spec("players", dict), {"a": {"gold": 3}, "b": {"gold": 4}}, version=1)
    store.close()
    url = f"sqlite:///{tmp_path}/game.db"
    assert main(["migrate", "--store", url, "--spec", "gamespec:PLAYERS"]) == 0
    out = capsys.readouterr().out
    assert "players: 2 records, to version 3" in out
    assert "migrated" in out
    assert main(["migrate", "--store", url, "--spec", "gamespec"]) == 2
    assert "MODULE:NAME" in capsys.readouterr().err
    assert main(["migrate", "--store", url, "--spec", "nosuchmodule:X"]) == 2
    assert "cannot import" in capsys.readouterr().err
    assert main(["migrate", "--store", url, "--spec", "gamespec:to_v2"]) == 2
    assert "not a sessionlocker Spec" in capsys.readouterr().err
    assert main(["migrate", "--store", "ftp://x", "--spec", "gamespec:PLAYERS"]) == 2
