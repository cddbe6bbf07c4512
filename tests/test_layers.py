"""The layers hold: core/ does no I/O, stores/ know nothing of the locker logic."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
    "sessionlocker.core._machine",
    "sessionlocker.core._loading",
    "sessionlocker.core._saving",
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


# What a pure import must not load at run time, directly or through a package __init__.
RUNTIME_FORBIDDEN = {
    "asyncio",
    "threading",
    "sqlite3",
    "socket",
    "concurrent",
    "redis",
    "psycopg",
    "sessionlocker.stores",
    "sessionlocker.drivers",
}


def loaded_by(statement: str) -> list[str]:
    """The forbidden modules that ``statement`` loads in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{statement}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    new: list[str] = json.loads(result.stdout)
    return sorted(name for name in new if is_under(name, RUNTIME_FORBIDDEN))


def is_under(name: str, modules: set[str]) -> bool:
    return any(name == module or name.startswith(module + ".") for module in modules)


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
            if is_under(name, forbidden):
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


@pytest.mark.parametrize(
    "statement",
    [
        "import sessionlocker",
        "import sessionlocker.core",
        "import sessionlocker.core.locker",
        "from sessionlocker import Locker, Migrations, Spec, SessionLockerError, reconcile",
    ],
)
def test_importing_the_core_loads_no_thread_asyncio_or_database(statement: str) -> None:
    assert loaded_by(statement) == []


def test_the_runtime_check_sees_a_driver_import() -> None:
    assert "asyncio" in loaded_by("import sessionlocker.core; from sessionlocker import Profile")
    assert {"sqlite3", "sessionlocker.stores.memory"} <= set(
        loaded_by("from sessionlocker import MemoryStore")
    )


def core_import_graph() -> dict[str, set[str]]:
    """Which core modules each core module imports (``TYPE_CHECKING`` imports included)."""
    modules = {f"sessionlocker.core.{p.stem}": p for p in (PACKAGE / "core").glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {other for other in found if other in modules and other != name}
    return graph


def a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (its modules in order), or ``[]`` when there is none."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return []
        for other in sorted(graph.get(name, ())):
            cycle = visit(other, [*path, name])
            if cycle:
                return cycle
        done.add(name)
        return []

    for name in sorted(graph):
        cycle = visit(name, [])
        if cycle:
            return cycle
    return []


def test_core_modules_import_each_other_without_a_cycle() -> None:
    graph = core_import_graph()
    assert "sessionlocker.core.operations" in graph["sessionlocker.core.locker"]
    assert a_cycle(graph) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert a_cycle(graph) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set()}) == []
