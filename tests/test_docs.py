"""Docs that are generated or repeated must match where they come from, and run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sessionlocker import (
    AsyncLockerService,
    EasyProfile,
    EasyStore,
    Handle,
    Locker,
    LockerService,
    Profile,
    Purchaser,
    Trades,
)
from sessionlocker.core.diagram import mermaid
from sessionlocker.core.states import Status

DOCS = Path(__file__).parent.parent / "docs"
README = DOCS.parent / "README.md"

#: The public classes whose every call the guarantees page covers, by the name it uses.
DOCUMENTED = {
    LockerService: "service",
    AsyncLockerService: "aservice",
    Locker: "locker",
    Profile: "profile",
    EasyStore: "easy",
    EasyProfile: "eprofile",
    Purchaser: "purchaser",
    Trades: "trades",
    Handle: "handle",
}


def test_state_diagram_page_matches_the_transition_table() -> None:
    page = (DOCS / "state-diagram.md").read_text()
    assert f"```mermaid\n{mermaid()}```" in page, (
        "docs/state-diagram.md is stale: paste sessionlocker.core.diagram.mermaid() into it"
    )


def test_state_diagram_page_explains_every_status() -> None:
    page = (DOCS / "state-diagram.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|", page, flags=re.M)
    assert rows == [status.value for status in Status]


def test_every_doc_linked_from_the_readme_exists() -> None:
    readme = README.read_text()
    for name in ("usage.md", "design.md", "guarantees.md", "state-diagram.md"):
        assert (DOCS / name).exists(), name
        assert f"docs/{name}" in readme or name == "state-diagram.md"


def test_the_home_page_opens_as_the_readme_does() -> None:
    opening = re.search(r"^\*\*sessionlocker\*\* gives .*?\n\n", README.read_text(), re.S | re.M)
    assert opening is not None
    assert opening.group(0) in (DOCS / "index.md").read_text()


def test_getting_started_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = DOCS / "getting-started.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) == 6
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(page), "exec"), {"__name__": "getting_started"})
    out = capsys.readouterr().out
    assert "coins: 100" in out
    assert "sword saved: True" in out
    assert "welcome back, player-9 0 coins" in out
    assert "saved with 105 coins" in out
    assert "after the burst: 10 coins" in out
    assert "typed coins: 3" in out


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda cls: cls.__name__)
def test_guarantees_page_covers_every_public_call(cls: type) -> None:
    page = (DOCS / "guarantees.md").read_text()
    name = DOCUMENTED[cls]
    public = [member for member in dir(cls) if not member.startswith("_")]
    missing = [m for m in public if not re.search(rf"\b{name}\.{m}\b", page)]
    assert not missing, f"docs/guarantees.md: add what {name}.{missing} raise and leave"
