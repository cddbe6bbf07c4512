"""Docs that are generated must match what they are generated from."""

from __future__ import annotations

from pathlib import Path

from sessionlocker.core.diagram import mermaid

DOCS = Path(__file__).parent.parent / "docs"


def test_state_diagram_page_matches_the_transition_table() -> None:
    page = (DOCS / "state-diagram.md").read_text()
    assert f"```mermaid\n{mermaid()}```" in page


def test_every_doc_linked_from_the_readme_exists() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    for name in ("usage.md", "design.md", "guarantees.md", "state-diagram.md"):
        assert (DOCS / name).exists(), name
        assert f"docs/{name}" in readme or name == "state-diagram.md"
