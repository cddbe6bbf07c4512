"""The declared minimum version of every optional dependency, as exact pins.

``./run min-deps`` installs these pins in ``.venv-min`` and runs the backend tests there,
so the floors in ``pyproject.toml`` are versions that were seen to work, not guesses.
Run as a script, it prints one requirement a line (``redis==5.3``), for ``pip install -r``.
The ``dev`` and ``docs`` extras are tools for working on the project, not dependencies of
the library, and are left out.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"

#: Extras that install tools for the project itself rather than dependencies of the library.
TOOL_EXTRAS = frozenset({"dev", "docs"})

_FLOOR = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+(\[[A-Za-z0-9_,\-]+\])?)>=(?P<version>[0-9.]+)$")


def pinned(requirement: str) -> str:
    """``name[extra]>=1.2`` as ``name[extra]==1.2``; ``ValueError`` without one plain floor."""
    match = _FLOOR.match(requirement.replace(" ", ""))
    if match is None:
        raise ValueError(f"{requirement!r} must be written name>=version (one floor, no cap)")
    return f"{match['name']}=={match['version']}"


def minimum_pins(pyproject: Path = PYPROJECT) -> list[str]:
    """Every optional dependency of the library's extras, pinned to its floor."""
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    pins = {
        pinned(requirement)
        for name, requirements in extras.items()
        if name not in TOOL_EXTRAS
        for requirement in requirements
    }
    return sorted(pins)


if __name__ == "__main__":
    sys.stdout.write("".join(f"{pin}\n" for pin in minimum_pins()))
