"""``sessionlocker simulate``: the checker catches planted violations, and short runs on
SQLite, Redis and PostgreSQL, with crashes, pauses, faults and skew, find none."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sessionlocker.cli.main import main
from sessionlocker.core.record import Lock, Record
from sessionlocker.sim.check import VIOLATIONS, check
from sessionlocker.sim.history import Event
from sessionlocker.sim.report import percentile
from sessionlocker.sim.run import _run_directory

# ---------------------------------------------------------------------- the checker


def _player(log: list[list[Any]], grants: Sequence[str] = (), items: Sequence[str] = ()) -> Record:
    data = {
        "count": len(log),
        "log": log,
        "items": list(items),
        "grants": list(grants),
        "bonuses": [],
        "coins": 0,
    }
    return Record(data=data)


def _event(kind: str, worker: str, **fields: Any) -> Event:
    return {"event": kind, "worker": worker, "t": fields.pop("t", 1.0), **fields}


def _clean() -> tuple[list[Event], dict[str, Record | None]]:
    """A small consistent run: S1 then S2 held k, each confirmed its changes; one grant."""
    events = [
        _event("loaded", "S1", key="k", epoch=1, count=0, items=[], t=1.0),
        _event("confirmed", "S1", key="k", n=1, epoch=1, t=1.1),
        _event("confirmed", "S1", key="k", n=2, epoch=1, t=1.2),
        _event("loaded", "S2", key="k", epoch=2, count=2, items=[], t=2.0),
        _event("confirmed", "S2", key="k", n=3, epoch=2, t=2.1),
        _event("granted", "S2", purchase="p1", buyer="k", recipient="k", t=2.2),
    ]
    log = [["S1", 1, 1], ["S1", 2, 1], ["S2", 3, 2]]
    return events, {"k": _player(log, grants=["p1"], items=["item-p1"])}


def test_the_checker_finds_nothing_wrong_in_a_consistent_history() -> None:
    events, records = _clean()
    assert check(events, records) == dict.fromkeys(VIOLATIONS, 0)


def test_the_checker_counts_a_planted_double_grant() -> None:
    events, records = _clean()
    log = [["S1", 1, 1], ["S1", 2, 1], ["S2", 3, 2]]
    records["k"] = _player(log, grants=["p1", "p1"], items=["item-p1", "item-p1"])
    found = check(events, records)
    assert found["double_grants"] == 1
    assert found["items_duplicated"] == 1


def test_the_checker_counts_a_planted_lost_save() -> None:
    events, records = _clean()
    records["k"] = _player([["S1", 1, 1], ["S1", 2, 1]], grants=["p1"], items=["item-p1"])
    found = check(events, records)
    assert found["lost_acknowledged_saves"] == 1
    assert found["data_regressions"] == 0


def test_the_checker_counts_a_planted_split_brain_commit() -> None:
    events, records = _clean()
    # S1, whose epoch 1 had ended when S2 loaded in epoch 2, still confirmed a change
    events.append(_event("confirmed", "S1", key="k", n=3, epoch=1, t=2.15))
    found = check(events, records)
    assert found["split_brain_commits"] >= 1
    assert found["lost_acknowledged_saves"] == 1  # log[2] is S2's change, not S1's


def test_the_checker_counts_two_owners_in_one_epoch_and_a_log_going_back() -> None:
    events, records = _clean()
    events.append(_event("confirmed", "S3", key="k", n=2, epoch=1, t=1.3))
    records["k"] = _player(
        [["S1", 1, 1], ["S2", 2, 2], ["S1", 3, 1]], grants=["p1"], items=["item-p1"]
    )
    assert check(events, records)["split_brain_commits"] >= 2


def test_the_checker_counts_lost_grants_regressions_and_stuck_locks() -> None:
    events, records = _clean()
    events.append(_event("loaded", "S3", key="k", epoch=3, count=1, items=[], t=3.0))
    unlocked = _player([["S1", 1, 1], ["S1", 2, 1], ["S2", 3, 2]])
    records["k"] = replace(unlocked, lock=Lock(session="dead", epoch=3, acquired=0.0))
    found = check(events, records)
    assert found["lost_grants"] == 1
    assert found["items_lost"] == 1
    assert found["data_regressions"] == 1
    assert found["stuck_locks"] == 1


def test_the_checker_names_each_violation_with_key_epochs_servers_and_times() -> None:
    events, records = _clean()
    events.append(_event("loaded", "S3", key="k", epoch=3, count=1, items=[], t=3.0))
    unlocked = _player([["S1", 1, 1], ["S1", 2, 1], ["S2", 3, 2]])
    records["k"] = replace(unlocked, lock=Lock(session="dead", epoch=3, acquired=0.0))
    findings: list[str] = []
    check(events, records, findings)
    regression = next(line for line in findings if line.startswith("data_regressions"))
    for part in ("k:", "S3 epoch 3 t=3.000", "count 1", "S2 epoch 2 t=2.100", "change 3"):
        assert part in regression, regression
    stuck = next(line for line in findings if line.startswith("stuck_locks"))
    assert "session dead in epoch 3" in stuck


def test_a_failed_run_keeps_its_folder_and_a_good_one_does_not(tmp_path: Path) -> None:
    with _run_directory(None) as (good, _):
        assert good.is_dir()
    assert not good.exists()
    with _run_directory(None) as (failed, keep):
        keep()
    assert failed.is_dir()
    with pytest.raises(RuntimeError), _run_directory(None) as (broken, _):
        raise RuntimeError("the run could not finish")
    assert broken.is_dir()
    with _run_directory(tmp_path) as (chosen, _):
        pass
    assert chosen.is_dir()
    for folder in (failed, broken):
        shutil.rmtree(folder)


def test_percentiles_use_the_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0


# ---------------------------------------------------------------------- real runs


def _simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code = main(
        [
            "simulate",
            "--json",
            "--out",
            str(tmp_path),
            "--seed",
            "7",
            "--servers",
            "3",
            "--players",
            "8",
            "--crash-rate",
            "0.2",
            "--pause-rate",
            "0.15",
            "--fault-rate",
            "0.05",
            "--skew",
            "0.5",
            *extra,
        ]
    )
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == (0 if report["ok"] else 1)
    assert report["violations"] == dict.fromkeys(VIOLATIONS, 0), report
    assert report["saves"] > 0
    assert report["handoffs"] > 0
    assert report["purchases_granted"] > 0
    assert report["faults_injected"] > 0
    assert report["crashes"] + report["pauses"] > 0
    for key in ("operations", "handoff_ms", "takeovers", "store", "seed", "duration_s"):
        assert key in report
    assert (Path(report["directory"]) / "report.json").exists()
    return report


@pytest.mark.slow
def test_simulate_on_sqlite_with_crashes_pauses_and_faults_finds_no_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _simulate(tmp_path, capsys, "--duration", "9")
    assert report["store"].startswith("sqlite:///")
    histories = list(Path(report["directory"]).glob("server-*.jsonl"))
    assert len(histories) == 3


@pytest.mark.slow
def test_simulate_on_redis_finds_no_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    _simulate(tmp_path, capsys, "--duration", "7", "--store", redis_url)


@pytest.mark.slow
def test_simulate_on_postgresql_finds_no_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    _simulate(tmp_path, capsys, "--duration", "7", "--store", postgres_url)


def worker_processes() -> list[int]:
    """Pids of our children that run a simulation server (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"sessionlocker.sim.worker" in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_simulate_prints_a_human_report_and_leaves_no_process_or_folder(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["simulate", "--duration", "3", "--players", "4", "--servers", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    for name in VIOLATIONS:
        assert f"    {name:<24} 0" in captured.out
    assert "handoffs:" in captured.out
    assert "histories:" not in captured.out
    assert captured.out.strip().splitlines()[-1].startswith("OK in ")
    assert "simulate:" in captured.err  # the plain progress lines, not a terminal here
    assert worker_processes() == []


# ---------------------------------------------------------------------- the command line


def test_simulate_help_explains_the_run_and_every_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sessionlocker simulate ")
    for option in (
        "--store URL",
        "--servers N",
        "--players N",
        "--duration SECONDS",
        "--seed N",
        "--crash-rate R",
        "--pause-rate R",
        "--fault-rate R",
        "--skew SECONDS",
        "--json",
        "--out DIR",
    ):
        assert option in out
    for word in ("SIGKILL", "SIGSTOP", "Exit status"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--players", "0"], "--players: must be between 1 and 1000, not 0"),
        (["--players", "many"], "--players: 'many' is not a valid number"),
        (["--duration", "-1"], "--duration: must be between 1 and 3600, not -1"),
        (["--fault-rate", "0.9"], "--fault-rate: must be between 0 and 0.5, not 0.9"),
        (["--seed", "x"], "--seed: invalid int value: 'x'"),
    ],
)
def test_bad_simulate_options_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_an_unreachable_store_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--store", "nosuchscheme://x", "--duration", "1"])
    assert code == 1
    assert "sessionlocker simulate: error:" in capsys.readouterr().err
