"""The ``sessionlocker`` command: its help, its usage errors, and ``simulate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

from sessionlocker.cli.main import main
from sessionlocker.core.record import Lock, Record
from sessionlocker.sim.check import (
    Findings,
    check_confirmed,
    check_locks,
    check_records,
    check_takeovers,
)
from sessionlocker.sim.history import Confirmed
from sessionlocker.sim.report import Kill, Report

ROOT = Path(__file__).parent.parent


def worker_processes() -> list[int]:
    """Pids of our children that run a simulation worker (Linux /proc)."""
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


# ---------------------------------------------------------------------- simulate


@pytest.mark.slow
def test_simulate_reports_a_kill_a_takeover_and_no_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--duration", "3", "--json", "--dir", str(tmp_path), "--seed", "5"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["violations"]
    assert report["ok"] is True
    assert report["violation_count"] == 0
    assert report["violations"] == []
    assert report["checks"] > report["confirmed_changes"] > 0
    assert report["seed"] == 5
    assert report["players"] == 4
    assert set(report["confirmed"]) == {"A", "B"}
    kill = report["kill"]
    assert kill["worker"] in ("A", "B")
    assert kill["held"]
    assert sorted(kill["takeovers"]) == kill["held"]
    assert 0 < kill["lease_alive_for"] <= report["takeover_seconds"]
    assert report["takeover_seconds"] <= report["lease"] + 2.0
    assert report["handoffs"] > 0
    assert report["elapsed"] < 15.0
    database = Path(report["database"])
    assert database.parent.parent == tmp_path
    assert database.exists()
    assert {path.name for path in database.parent.glob("worker-*.jsonl")} == {
        "worker-A.jsonl",
        "worker-B.jsonl",
    }
    assert worker_processes() == []


@pytest.mark.slow
def test_simulate_prints_a_human_report_and_removes_its_temporary_folder(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "--duration", "2", "--players", "2"]) == 0
    out = capsys.readouterr().out
    assert "violations:        0/" in out
    assert "takeover:" in out
    assert "(removed)" in out
    database = Path(out.split("database:", 1)[1].split()[0])
    assert not database.parent.exists()
    assert out.strip().splitlines()[-1].startswith("OK in ")


# ---------------------------------------------------------------------- help and errors


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sessionlocker ")
    assert "simulate" in out
    assert "sessionlocker COMMAND --help" in out


def test_simulate_help_explains_the_run_and_every_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sessionlocker simulate ")
    for option in ("--dir DIR", "--players N", "--duration SECONDS", "--seed N", "--json"):
        assert option in out
    assert "SIGKILL" in out
    assert "Exit status" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--bogus"], "sessionlocker simulate: error: unrecognized arguments: --bogus"),
        (["simulate", "--players", "0"], "--players: must be between 1 and 1000, not 0"),
        (["simulate", "--players", "many"], "--players: 'many' is not a whole number"),
        (["simulate", "--duration", "-1"], "--duration: must be between 1 and 3600 seconds"),
        (["simulate", "--dir", "/no/such/dir"], "--dir: '/no/such/dir' is not an existing"),
        (["simulate", "--seed", "x"], "--seed: invalid int value: 'x'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_command_lines_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert captured.err.startswith("usage: sessionlocker")


def test_the_declared_console_script_is_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["sessionlocker"].partition(":")
    assert getattr(import_module(module), name) is main


SCRIPT = Path(sys.executable).parent / "sessionlocker"


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([str(SCRIPT)], id="console-script"),
        pytest.param([sys.executable, "-m", "sessionlocker"], id="python-m"),
    ],
)
def test_runs_in_its_own_process(command: list[str]) -> None:
    if not Path(command[0]).exists():
        pytest.skip("the console script is not installed in this environment")
    done = subprocess.run(
        [*command, "simulate", "--nope"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "sessionlocker simulate: error: unrecognized arguments: --nope" in done.stderr


# ---------------------------------------------------------------------- the checks


def record(log: list[list[object]], lock: Lock | None = None) -> Record:
    return Record(data={"count": len(log), "log": log}, epoch=3, lock=lock)


def test_checks_find_a_lost_confirmed_change() -> None:
    records = {"p": record([["A", 1], ["B", 2]])}
    findings = Findings()
    check_confirmed(
        findings,
        records,
        [Confirmed("A", "p", 1, 0.0), Confirmed("A", "p", 2, 0.0), Confirmed("B", "p", 3, 0.0)],
    )
    assert findings.checks == 3
    assert findings.violations == [
        "p: confirmed change 2 by A is missing (final log has ['B', 2] there, count 2)",
        "p: confirmed change 3 by B is missing (final log has None there, count 2)",
    ]


def test_checks_find_an_inconsistent_record_and_a_lock_left_held() -> None:
    lock = Lock("sim-A-1", 3, 0.0)
    bad = Record(data={"count": 3, "log": [["A", 1], ["A", 3]]}, epoch=3, lock=lock)
    findings = Findings()
    check_records(findings, {"ok": record([["A", 1]]), "bad": bad})
    check_locks(findings, {"ok": record([]), "bad": bad}, {"sim-A-1": "A"})
    assert findings.checks == 4
    assert findings.violations == [
        "bad: count 3 does not match its log of 2 entries",
        "bad: still locked at the end by A",
    ]


def test_checks_find_a_missing_or_early_takeover() -> None:
    findings = Findings()
    check_takeovers(findings, ["a", "b", "c"], {"a": 1.0, "b": 0.1}, alive_for=0.6)
    assert findings.violations == [
        "b: taken over 0.10 s after the kill, while the store still judged the killed "
        "worker's lease alive (0.60 s after the kill)",
        "c: the killed worker's lock was never taken",
    ]


def test_a_report_with_violations_fails_and_says_why() -> None:
    report = Report(
        database="/tmp/x.db",
        kept=True,
        players=2,
        duration=3.0,
        seed=1,
        lease=1.0,
        workers=["A", "B"],
        kill=Kill("A", 1.5, ["p"], {}),
        handoffs=4,
        confirmed={"A": 2, "B": 3},
        lost_locks=0,
        checks=9,
        violations=["p: the killed worker's lock was never taken"],
        elapsed=3.2,
    )
    assert not report.ok
    text = report.text()
    assert "violations:        1/9 checks" in text
    assert "    - p: the killed worker's lock was never taken" in text
    assert "takeover:          not observed for every key" in text
    assert text.splitlines()[-1] == "FAILED in 3.2 s"
    as_json = json.loads(json.dumps(report.as_dict()))
    assert as_json["ok"] is False
    assert as_json["takeover_seconds"] is None
    assert as_json["confirmed_changes"] == 5
