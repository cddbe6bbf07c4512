"""The ``sessionlocker`` command: its help, its usage errors, its entry points.

``simulate`` itself is tested in ``test_simulate.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

from sessionlocker.cli.main import main

ROOT = Path(__file__).parent.parent


# ---------------------------------------------------------------------- help and errors


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sessionlocker ")
    assert "simulate" in out
    assert "sessionlocker COMMAND --help" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--bogus"], "sessionlocker simulate: error: unrecognized arguments: --bogus"),
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
