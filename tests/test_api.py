"""The public API: the exact names of ``sessionlocker`` and ``sessionlocker.stores``.

Adding or removing a public name is a decision: it changes this list, docs/api.md and the
changelog together. Every name the docs use must exist (the API reference's ``:::``
entries and the ``sessionlocker`` names in the pages' code blocks), and the package must
import without the optional database clients installed.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sessionlocker
import sessionlocker.stores

ROOT = Path(__file__).parent.parent

PUBLIC = {
    "AlreadyOpen",
    "AsyncLockerService",
    "AsyncPostgreSQLStore",
    "AsyncRedisClusterStore",
    "AsyncRedisStore",
    "AsyncStore",
    "Attempt",
    "CloseReport",
    "Conflict",
    "CorruptRecord",
    "Credit",
    "DataError",
    "Decision",
    "EasyProfile",
    "EasyStore",
    "Handle",
    "InvalidData",
    "LoadMode",
    "LoadedRecord",
    "Lock",
    "LockError",
    "LockLost",
    "LockUnavailable",
    "Locker",
    "LockerService",
    "MemoryStore",
    "Message",
    "MessageError",
    "MigrationError",
    "Migrations",
    "Mode",
    "ModeName",
    "NewerSchema",
    "Outcome",
    "PastVersion",
    "PostgreSQLStore",
    "Profile",
    "Purchaser",
    "Receipt",
    "RecordTooLarge",
    "RedisClusterStore",
    "RedisStore",
    "SQLiteStore",
    "SaveReason",
    "SessionLockerError",
    "Snapshot",
    "Spec",
    "Status",
    "Store",
    "StoreError",
    "StoreFailure",
    "Throttled",
    "Trades",
    "UnhandledMessage",
    "UnstorableData",
    "UsageError",
    "open_async_store",
    "open_store",
    "reconcile",
}

STORES_PUBLIC = {
    "AsyncPostgreSQLStore",
    "AsyncRedisClusterStore",
    "AsyncRedisStore",
    "AsyncStore",
    "CountingStore",
    "FaultyStore",
    "MemoryStore",
    "PostgreSQLStore",
    "ReadOnlyStore",
    "RedisClusterStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "ThreadedAsyncStore",
    "async_cas_update",
    "cas_update",
    "open_async_store",
    "open_store",
    "threaded",
}


def resolve(dotted: str) -> object:
    """The object a dotted name such as ``sessionlocker.stores.MemoryStore`` stands for."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part)
        return found
    raise ModuleNotFoundError(dotted)


def test_the_public_names_of_sessionlocker() -> None:
    assert set(sessionlocker.__all__) == PUBLIC
    assert len(sessionlocker.__all__) == len(PUBLIC)
    assert sorted(dir(sessionlocker)) == sorted(PUBLIC)


def test_the_public_names_of_sessionlocker_stores() -> None:
    assert set(sessionlocker.stores.__all__) == STORES_PUBLIC
    assert len(sessionlocker.stores.__all__) == len(STORES_PUBLIC)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from sessionlocker import {name}", namespace)
    assert namespace[name] is getattr(sessionlocker, name)


@pytest.mark.parametrize("name", sorted(STORES_PUBLIC))
def test_every_store_name_is_importable(name: str) -> None:
    found = getattr(sessionlocker.stores, name)
    assert found.__name__ == name
    if name in PUBLIC:
        assert found is getattr(sessionlocker, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="MemoryStor"):
        _ = sessionlocker.MemoryStor
    with pytest.raises(AttributeError, match="RedisStor"):
        _ = sessionlocker.stores.RedisStor
    with pytest.raises(ImportError):
        exec("from sessionlocker import MemoryStor", {})


def test_every_exception_is_public() -> None:
    errors = importlib.import_module("sessionlocker.errors")
    assert set(errors.__all__) <= PUBLIC
    assert all(issubclass(getattr(sessionlocker, name), Exception) for name in errors.__all__)


def test_the_package_imports_without_redis_or_psycopg() -> None:
    code = (
        "import sys\n"
        "for name in ('redis', 'psycopg', 'psycopg_pool'):\n"
        "    sys.modules[name] = None\n"
        "import sessionlocker, sessionlocker.stores\n"
        "from sessionlocker import LockerService, MemoryStore, SQLiteStore, open_store\n"
        "open_store('memory://').close()\n"
        "for name in ('RedisStore', 'AsyncRedisStore', 'PostgreSQLStore'):\n"
        "    try:\n"
        "        getattr(sessionlocker, name)\n"
        "    except ImportError:\n"
        "        print('missing', name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [
        "missing RedisStore",
        "missing AsyncRedisStore",
        "missing PostgreSQLStore",
    ]


def api_reference_names() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    return re.findall(r"^::: (sessionlocker[\w.]*)", text, flags=re.MULTILINE)


def code_block_names() -> list[str]:
    """Every ``sessionlocker`` name used in a code block of the docs or the README."""
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    names = []
    for page in pages:
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", page.read_text(), re.M | re.S):
            for module, wrapped, imported in re.findall(
                r"^\s*from (sessionlocker[\w.]*) import (?:\(([^)]*)\)|([\w, ]+)$)", block, re.M
            ):
                listed = (wrapped or imported).replace("\n", " ").split(",")
                names += [f"{module}.{name.strip()}" for name in listed if name.strip()]
            names += re.findall(r"(?<![\w.])(sessionlocker(?:\.\w+)+)", block)
    return [name.rstrip(".") for name in names if not name.endswith(".")]


def test_the_doc_walkers_find_names() -> None:
    assert "sessionlocker.LockerService" in api_reference_names()
    assert "sessionlocker.errors" in api_reference_names()
    assert "sessionlocker.Spec" in code_block_names()
    with pytest.raises(AttributeError):
        resolve("sessionlocker.stores.NoSuchStore")
    with pytest.raises(ModuleNotFoundError):
        resolve("nosuchpackage.thing")


@pytest.mark.parametrize("dotted", sorted(set(api_reference_names())))
def test_every_name_in_the_api_reference_exists(dotted: str) -> None:
    assert resolve(dotted) is not None


def test_every_name_in_the_docs_code_blocks_exists() -> None:
    missing = []
    for dotted in sorted(set(code_block_names())):
        try:
            resolve(dotted)
        except (AttributeError, ImportError):
            missing.append(dotted)
    assert missing == []


def test_the_store_packages_export_their_stores() -> None:
    redis = importlib.import_module("sessionlocker.stores.redis")
    postgresql = importlib.import_module("sessionlocker.stores.postgresql")
    assert set(redis.__all__) == {
        "AsyncRedisClusterStore",
        "AsyncRedisStore",
        "RedisOptions",
        "RedisSettings",
        "RedisClusterStore",
        "RedisStore",
        "RedisWatch",
    }
    assert set(postgresql.__all__) == {
        "AsyncPostgreSQLStore",
        "PostgreSQLOptions",
        "PostgreSQLSettings",
        "PostgreSQLStore",
        "PostgreSQLWatch",
    }
    assert redis.RedisStore is sessionlocker.RedisStore
    assert postgresql.PostgreSQLStore is sessionlocker.PostgreSQLStore


def test_the_old_session_id_spelling_still_works_with_a_warning() -> None:
    spec = sessionlocker.Spec("players", dict)
    with pytest.warns(DeprecationWarning, match="lease_id"):
        service = sessionlocker.LockerService("memory://", spec, session_id="s-1")
    with service:
        assert service.lease_id == "s-1"
        with pytest.warns(DeprecationWarning, match="lease_id"):
            assert service.session_id == "s-1"
    with pytest.raises(sessionlocker.UsageError, match="not both"):
        sessionlocker.LockerService("memory://", spec, "a", session_id="b")


def test_the_old_history_names_still_import_with_a_warning() -> None:
    base = importlib.import_module("sessionlocker.stores.base")
    with pytest.warns(DeprecationWarning, match="Entry"):
        assert base.Version is base.Entry
    with pytest.warns(DeprecationWarning, match="KeepsHistory"):
        assert base.Versions is base.KeepsHistory
    with pytest.raises(AttributeError):
        _ = base.NoSuchName
