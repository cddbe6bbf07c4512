"""The layers hold: core/ does no I/O, stores/ know nothing of the locker logic."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import sessionlocker

PACKAGE = Path(sessionlocker.__file__).parent

CORE_FORBIDDEN = {
    "time",
    "threading",
    "asyncio",
    "concurrent",
    "socket",
    "sqlite3",
    "redis",
    "psycopg",
    "psycopg_pool",
    "random",
    "datetime",
    "sessionlocker.stores",
    "sessionlocker.drivers",
    "sessionlocker.cli",
    "sessionlocker.sim",
}
STORES_FORBIDDEN = {
    "sessionlocker.core.locker",
    "sessionlocker.core.states",
    "sessionlocker.core.changes",
    "sessionlocker.core.operations",
    "sessionlocker.core.ledger",
    "sessionlocker.core.handles",
    "sessionlocker.purchases",
    "sessionlocker.trades",
    "sessionlocker.core.transforms",
    "sessionlocker.core.lease",
    "sessionlocker.core.modes",
    "sessionlocker.drivers",
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def violations(folder: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for name in imports_of(path):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


def test_core_imports_no_store_driver_clock_thread_or_database() -> None:
    assert list((PACKAGE / "core").glob("*.py")), "core/ has no modules"
    assert violations("core", CORE_FORBIDDEN) == []


def test_stores_do_not_import_the_locker_logic() -> None:
    assert violations("stores", STORES_FORBIDDEN) == []


def test_the_walker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom sessionlocker.stores import memory\n")
    assert imports_of(sample) == {"time", "sessionlocker.stores"}


def test_public_api_is_what_all_says() -> None:
    names = {name for name in dir(sessionlocker) if not name.startswith("_")}
    public = {name for name in names if not isinstance(getattr(sessionlocker, name), ModuleType)}
    assert public == set(sessionlocker.__all__)
