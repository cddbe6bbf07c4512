"""Every way an admin command can fail ends in one line on stderr and a non-zero exit.

No traceback: not for an OS error (a file that cannot be written), not for a reader that
closes the pipe early (``| head``), not for a bad argument. Read-only commands do not
create a SQLite file that is not there, and an empty namespace says which ones have
records. The pipe cases run the real command in its own process.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sessionlocker import Spec
from sessionlocker.cli.main import EXIT_PIPE, main
from sessionlocker.stores import SQLiteStore
from sessionlocker.testing import seed

COMMAND = [sys.executable, "-m", "sessionlocker"]


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store holding 1,500 records of ``players`` and one of ``guilds``."""
    path = tmp_path / "game.db"
    store = SQLiteStore(path)
    try:
        players = {f"p{i:04d}": {"gold": i, "note": "x" * 200} for i in range(1500)}
        seed(store, Spec("players", dict), players)
        seed(store, Spec("guilds", dict), {"g1": {"members": []}})
    finally:
        store.close()
    return f"sqlite:///{path}"


def on(url: str, *args: str, namespace: str = "players") -> list[str]:
    return [*args, "--store", url, "--namespace", namespace]


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The single line a failing command wrote on stderr."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_export_to_a_folder_that_does_not_exist(url: str) -> None:
    argv = on(url, "export", "--out", "/nonexistent-dir/out.jsonl")
    done = subprocess.run(
        [*COMMAND, *argv], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "cannot write /nonexistent-dir/out.jsonl: No such file or directory" in line
    assert done.stdout == ""


def test_an_audit_file_that_cannot_be_written_is_refused_before_erasing(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = tmp_path / "no-such-folder" / "audit.log"
    argv = on(url, "erase", "--user", "u1", "--yes", "--audit", str(audit))
    code, out, err = run(capsys, argv)
    assert (code, out) == (2, "")
    assert "cannot append to the audit file" in one_line(err)


def test_list_into_head_stops_quietly(url: str, tmp_path: Path) -> None:
    store = SQLiteStore(url.removeprefix("sqlite:///"))
    try:  # 5,000 lines of 60+ characters: more than a pipe holds before head has gone
        seed(store, Spec("crowd", dict), {f"{'k' * 40}{i:05d}": {} for i in range(5000)})
    finally:
        store.close()
    status, err = tmp_path / "status", tmp_path / "err"
    command = shlex.join([*COMMAND, *on(url, "list", namespace="crowd")])
    script = f"{command} 2>{err} | head -3 >/dev/null; echo ${{PIPESTATUS[0]}} >{status}"
    subprocess.run(["bash", "-c", script], check=True, timeout=120)
    assert int(status.read_text()) == EXIT_PIPE
    assert "output closed early (broken pipe)" in one_line(err.read_text())


def test_export_to_a_reader_that_goes_away(url: str) -> None:
    with subprocess.Popen(
        [*COMMAND, *on(url, "export")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline().startswith('{"key": "p0000"')
        process.stdout.close()
        err = process.stderr.read()
        assert process.wait(timeout=120) == EXIT_PIPE
    lines = [line for line in err.splitlines() if not line.startswith("export: ")]
    assert "Traceback" not in err
    assert lines == ["sessionlocker export: output closed early (broken pipe); stopped"]


@pytest.mark.parametrize(
    "args",
    [["list"], ["show", "p0001"], ["history", "p0001"], ["export"]],
    ids=lambda args: args[0],
)
def test_read_only_commands_do_not_create_a_missing_store_file(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    code, out, err = run(capsys, on(f"sqlite:///{missing}", *args))
    assert (code, out) == (2, "")
    assert one_line(err) == f"sessionlocker {args[0]}: no such store file: {missing}"
    assert not missing.exists()


@pytest.mark.parametrize(
    "args",
    [["list"], ["export"], ["show", "p0001"], ["history", "p0001"], ["send", "p1", "k", "1"]],
    ids=lambda args: args[0],
)
def test_an_empty_namespace_names_the_ones_with_records(
    url: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, on(url, *args, namespace="player"))
    assert (code, out) == (1, "")
    assert (
        "namespace 'player' has no records (namespaces with records: 'guilds', 'players')"
        in one_line(err)
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["release", "p0001", "--timeout", "nan"], "'nan' is not a positive number"),
        (["edit", "p0001", "--timeout", "inf", "--patch", "{}"], "'inf' is not a positive"),
        (["erase", "--user", "u", "--timeout", "-1"], "'-1' is not a positive"),
        (["restore", "p0001", "x"], "REVISION is a whole number"),
        (["edit", "p0001", "--patch", '{"a": 1, "a": 2}'], "the key 'a' appears twice"),
        (["send", "p0001", "gift", '{"n": 1e999}'], "1e999 is too large"),
        (["send", "p0001", "gift", '"\\udc00"'], "lone surrogate"),
        (["import", "--in", "/nonexistent-dir/in.jsonl"], "cannot read /nonexistent-dir"),
        (["import", "--in", "/"], "cannot read /"),
        (["export", "--out", "/"], "cannot write /"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_bad_arguments_exit_2_with_one_line(
    url: str, args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, on(url, *args))
    assert (code, out) == (2, "")
    assert "Traceback" not in err
    assert words in err.splitlines()[-1]


def test_import_refuses_a_line_that_is_not_strict_json(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tmp_path / "in.jsonl"
    lines.write_text(
        '{"key": "new1", "record": {"format": 1, "data": {}}}\n'
        '{"key": "new2", "record": {"format": 1, "epoch": 9, "epoch": 1, "data": {}}}\n'
    )
    code, out, err = run(capsys, on(url, "import", "--in", str(lines)))
    assert (code, out) == (2, "")
    assert "line 2: not strict JSON" in one_line(err)
    assert "'epoch' appears twice" in err
    assert run(capsys, on(url, "show", "new1"))[0] == 1  # nothing was imported


def test_any_other_os_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ["simulate", "--out", "/proc/no-such-run-folder"])
    assert (code, out) == (1, "")
    assert one_line(err) == (
        "sessionlocker simulate: /proc/no-such-run-folder: No such file or directory"
    )
