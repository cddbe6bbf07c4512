"""The README's example runs as written (examples that are not executed go stale)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["./run simulate", "./run test"]


def test_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = python_blocks()
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert "sword saved: True" in capsys.readouterr().out
    assert (tmp_path / "game.db").exists()


def test_readme_links_work_as_a_package_description() -> None:
    # PyPI shows the README without the repository around it: a relative link would break.
    targets = re.findall(r"\]\(([^)]*)\)", README.read_text())
    assert targets
    assert [target for target in targets if not target.startswith("https://")] == []


def test_readme_install_names_the_real_extras() -> None:
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    named = {
        extra
        for group in re.findall(r"sessionlocker\[([a-z,]+)\]", README.read_text())
        for extra in group.split(",")
    }
    assert named >= {"redis", "postgresql", "cli"}
    assert named <= extras
