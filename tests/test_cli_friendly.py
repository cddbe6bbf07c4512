"""The admin commands as a user meets them, each run as its own process (``python -m``).

Environment defaults for ``--store`` and ``--namespace``; ``import`` saying it reads a
terminal; ``import`` of plain ``{"key", "data"}`` lines with one-line errors naming the
line; tables aligned for any key; progress drawn the same way by every command; and
every error line under 200 characters.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from sessionlocker import Spec
from sessionlocker.core.record import decode
from sessionlocker.stores import SQLiteStore
from sessionlocker.testing import seed

COMMAND = [sys.executable, "-m", "sessionlocker"]

#: Every command that takes ``--store`` (bench on purpose not from the environment).
STORE_COMMANDS = [
    "migrate",
    "list",
    "show",
    "release",
    "edit",
    "send",
    "export",
    "import",
    "history",
    "restore",
    "erase",
]


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without SESSIONLOCKER_*, plus ``variables``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONLOCKER_")}
    return {**kept, **variables}


def sessionlocker(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment() if env is None else env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store with two players and one guild."""
    path = tmp_path / "game.db"
    store = SQLiteStore(path)
    try:
        seed(store, Spec("players", dict), {"alice": {"gold": 1}, "bob": {"gold": 2}})
        seed(store, Spec("guilds", dict), {"g1": {"members": []}})
    finally:
        store.close()
    return f"sqlite:///{path}"


def read(url: str, key: str) -> bytes | None:
    store = SQLiteStore(url.removeprefix("sqlite:///"))
    try:
        versioned = store.read(key)
    finally:
        store.close()
    return None if versioned is None else versioned.value


# ------------------------------------------------------------- environment defaults


def test_store_and_namespace_come_from_the_environment(url: str) -> None:
    env = environment(SESSIONLOCKER_STORE=url, SESSIONLOCKER_NAMESPACE="players")
    done = sessionlocker("list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert [row["key"] for row in json.loads(done.stdout)] == ["alice", "bob"]
    shown = sessionlocker("show", "g1", "--namespace", "guilds", "--json", env=env)
    assert json.loads(shown.stdout)["data"] == {"members": []}  # the flag wins


def test_a_flag_wins_over_the_environment_store(url: str, tmp_path: Path) -> None:
    env = environment(SESSIONLOCKER_STORE=f"sqlite:///{tmp_path}/absent.db")
    done = sessionlocker("list", "--store", url, "--namespace", "players", env=env)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({}, "--store is required (SESSIONLOCKER_STORE is not set)"),
        ({"SESSIONLOCKER_STORE": ""}, "--store is required (SESSIONLOCKER_STORE is set but empty)"),
    ],
)
def test_a_missing_store_is_a_usage_error(variables: dict[str, str], says: str) -> None:
    done = sessionlocker("list", "--namespace", "players", env=environment(**variables))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == f"sessionlocker list: error: {says}"


def test_an_empty_namespace_variable_counts_as_unset(url: str) -> None:
    env = environment(SESSIONLOCKER_STORE=url, SESSIONLOCKER_NAMESPACE="")
    done = sessionlocker("list", env=env)
    assert done.returncode == 2
    assert "--namespace is required (SESSIONLOCKER_NAMESPACE is set but empty)" in done.stderr


def test_migrate_takes_its_store_from_the_environment(url: str, tmp_path: Path) -> None:
    (tmp_path / "gamespec.py").write_text(
        "from sessionlocker import Spec\n"
        "from sessionlocker.core.migrations import Migrations\n"
        "PLAYERS = Spec('players', dict, version=2,\n"
        "               migrations=Migrations().step(1, lambda data: None))\n"
    )
    done = subprocess.run(
        [*COMMAND, "migrate", "--spec", "gamespec:PLAYERS", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment(SESSIONLOCKER_STORE=url),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["migrated"] == 2
    value = read(url, "players/alice")
    assert value is not None
    assert decode(value).schema == 2


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_help_names_the_environment_variables(command: str) -> None:
    done = sessionlocker(command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps help lines
    assert "default: $SESSIONLOCKER_STORE" in text
    if "--namespace" in text:
        assert "default: $SESSIONLOCKER_NAMESPACE" in text


def test_top_level_help_names_the_environment_variables() -> None:
    done = sessionlocker("--help")
    assert "$SESSIONLOCKER_STORE and $SESSIONLOCKER_NAMESPACE" in done.stdout


def test_bench_takes_its_store_only_from_the_command_line(url: str) -> None:
    done = sessionlocker("bench", env=environment(SESSIONLOCKER_STORE=url))
    assert done.returncode == 2
    assert "required: --store" in done.stderr


# ------------------------------------------------------------------------ import


def test_import_on_a_terminal_says_it_reads_stdin(url: str) -> None:
    leader, follower = pty.openpty()
    try:
        with subprocess.Popen(
            [*COMMAND, "import", "--store", url, "--namespace", "new"],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        ) as process:
            os.close(follower)
            follower = -1
            os.write(leader, b'{"key": "carol", "data": {"gold": 3}}\n')
            os.write(leader, b"\x04")  # Ctrl-D at the start of a line: end of input
            out, err = process.communicate(timeout=120)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert process.returncode == 0, err
    assert "reading JSON lines from the terminal; end with Ctrl-D" in err
    assert "--in FILE" in err
    assert out.startswith("imported 1 records")


def test_import_from_a_pipe_says_nothing_about_the_terminal(url: str) -> None:
    done = sessionlocker(
        "import", "--store", url, "--namespace", "new", stdin='{"key": "c", "data": 1}\n'
    )
    assert done.returncode == 0, done.stderr
    assert "terminal" not in done.stderr


def test_import_plain_data_lines_as_new_records(url: str, tmp_path: Path) -> None:
    lines = tmp_path / "plain.jsonl"
    lines.write_text('{"key": "carol", "data": {"gold": 3}}\n\n{"key": "dave", "data": [1]}\n')
    argv = ["import", "--store", url, "--namespace", "players", "--in", str(lines), "--json"]
    done = sessionlocker(*argv, "--data-version", "2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"imported": 2, "skipped": 0}
    value = read(url, "players/carol")
    assert value is not None
    record = decode(value)
    assert (record.data, record.schema, record.compatible, record.lock) == ({"gold": 3}, 2, 2, None)
    again = sessionlocker(*argv)
    assert json.loads(again.stdout) == {"imported": 0, "skipped": 2}  # never overwritten


def test_export_then_import_is_exact(url: str) -> None:
    exported = sessionlocker("export", "--store", url, "--namespace", "players")
    assert exported.returncode == 0, exported.stderr
    imported = sessionlocker(
        "import", "--store", url, "--namespace", "copies", stdin=exported.stdout
    )
    assert imported.returncode == 0, imported.stderr
    for key in ("alice", "bob"):
        assert read(url, f"copies/{key}") == read(url, f"players/{key}")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"key": "y", "record": {"data": 1}}', 'line 2: "record" is not an exported record'),
        ("[1, 2, 3]", "line 2: a line is a JSON object"),
        ('{"key": "y"}', 'line 2: no "data"'),
        ('{"data": 1}', 'line 2: no "key"'),
        ('{"key": "y", "data": 1, "record": {}}', 'line 2: both "data" and "record"'),
        ('{"key": "y", "dta": 1}', "line 2: unknown field 'dta'"),
        ('{"key": "", "data": 1}', 'line 2: "key": a key cannot be empty'),
        ('{"key": 7, "data": 1}', 'line 2: "key": a key is a string, not int'),
        ('{"key": "y", "data": NaN}', "line 2: not strict JSON"),
        ('{"key": "y", "data": 1', "line 2: not JSON"),
        ('{"key": "y", "data": {"a": 1, "a": 2}}', "line 2: not strict JSON"),
        ('{"key": "a", "data": 2}', "line 2: key 'a' is already on line 1"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_written(url: str, line: str, says: str) -> None:
    stdin = '{"key": "a", "data": 1}\n' + line + "\n"
    done = sessionlocker("import", "--store", url, "--namespace", "new", stdin=stdin)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line
    assert done.stderr.startswith(f"sessionlocker import: {says}"), done.stderr
    assert "Traceback" not in done.stderr
    assert read(url, "new/a") is None  # line 1 was good, and still not written


def test_data_version_below_one_is_refused(url: str) -> None:
    done = sessionlocker(
        "import", "--store", url, "--namespace", "new", "--data-version", "0", stdin=""
    )
    assert done.returncode == 2
    assert "--data-version must be 1 or more" in done.stderr


# -------------------------------------------------------------- tables and progress


def test_list_aligns_keys_of_any_length(url: str) -> None:
    long_key = "guild-" + "x" * 50
    store = SQLiteStore(url.removeprefix("sqlite:///"))
    try:
        seed(store, Spec("players", dict), {long_key: {}, "宝箱": {}})
    finally:
        store.close()
    done = sessionlocker("list", "--store", url, "--namespace", "players")
    assert done.returncode == 0, done.stderr
    header, *rows, total = done.stdout.splitlines()
    assert total == "4 records"
    owner = header.index("OWNER")
    for row in rows:
        key = row.split()[0]
        wide = sum(1 for char in key if char in {"宝", "箱"})  # two columns each
        assert row.index(" -", len(key)) + 1 + wide == owner, (row, header)
    assert any(row.startswith(long_key + "  ") for row in rows)


def test_export_progress_on_a_terminal_is_a_bar(url: str) -> None:
    leader, follower = pty.openpty()
    try:
        with subprocess.Popen(
            [*COMMAND, "export", "--store", url, "--namespace", "players"],
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env=environment(),
        ) as process:
            os.close(follower)
            follower = -1
            seen = _read_until_closed(leader)
            assert process.wait(timeout=120) == 0
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert "export" in seen
    assert "2/2" in seen
    assert "━" in seen  # rich's bar: rich comes with the dev install (the cli extra)
    assert "export: 1/2 records\n" not in seen  # not the log lines of a pipe


def _read_until_closed(leader: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the follower side closed (EIO on Linux)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_in_a_log_is_a_few_plain_lines(url: str) -> None:
    store = SQLiteStore(url.removeprefix("sqlite:///"))
    try:
        seed(store, Spec("crowd", dict), {f"k{i:04d}": {} for i in range(2500)})
    finally:
        store.close()
    done = sessionlocker("export", "--store", url, "--namespace", "crowd")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert 2 <= len(lines) <= 11
    assert lines[-1] == "export: 2,500/2,500 records"
    assert all(line.startswith("export: ") for line in lines)


# ------------------------------------------------------------------- error lines


def bad_inputs(url: str, tmp_path: Path) -> list[list[str]]:
    """Each command with typical bad input (every one must fail)."""
    on = ["--store", url, "--namespace", "players"]
    long_url = "mongodb://" + "h" * 300 + "/db?" + "&".join(f"o{i}=1" for i in range(50))
    return [
        ["list", "--store", long_url, "--namespace", "players"],
        ["list", "--store", "x://somewhere", "--namespace", "players"],
        ["list", "--store", "postgresql://localhost/db?colour=red", "--namespace", "players"],
        ["list", "--store", f"sqlite:///{tmp_path}/missing.db", "--namespace", "players"],
        ["list", *on[:2], "--namespace", "nobody"],
        ["show", "ghost", *on],
        ["show", "k" * 500, *on],
        ["release", "ghost", *on],
        ["edit", "alice", "--patch", "{not json", *on],
        ["send", "alice", "gift", "[1,", *on],
        ["export", *on[:2], "--namespace", "nobody"],
        ["export", *on, "--out", f"{tmp_path}/no/such/dir/out.jsonl"],
        ["import", *on, "--in", f"{tmp_path}/absent.jsonl"],
        ["history", "ghost", *on],
        ["restore", "alice", "not-a-number", *on],
        ["erase", *on, "--user", "", "--yes"],
        ["migrate", "--store", url, "--spec", "no_such_module:SPEC"],
        ["bench", "--store", long_url],
        ["simulate", "--bogus"],
        ["bench", "--store", "memory://", "--size", "x" * 300],
        ["y" * 300],
    ]


def test_every_error_line_is_under_200_characters(url: str, tmp_path: Path) -> None:
    for argv in bad_inputs(url, tmp_path):
        done = sessionlocker(*argv)
        assert done.returncode != 0, argv
        assert "Traceback" not in done.stderr, argv
        for line in done.stderr.splitlines():
            assert len(line) < 200, (argv, line)
    done = sessionlocker("import", "--store", url, "--namespace", "new", stdin="[" * 600 + "\n")
    assert done.returncode == 2
    assert all(len(line) < 200 for line in done.stderr.splitlines()), done.stderr
