"""sessionlocker: exclusive, crash-safe ownership of stored records.

A process takes the lock on a record (a player's save, a guild, a cart), autosaves it,
and hands it to the next owner fast; every write is a compare-and-set fenced by an
ever-growing epoch, so a process that lost its lock can never overwrite the new owner.

Every name in ``__all__`` is the stable public API (with ``sessionlocker.stores`` for the
store wrappers and ``sessionlocker.testing`` for test helpers); docs/api.md lists them.
The names are loaded on first use (PEP 562), so ``import sessionlocker.core`` stays free
of threads, asyncio and database drivers, and the Redis and PostgreSQL stores import
their client libraries only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessionlocker.core.handles import Handle, Outcome
    from sessionlocker.core.loaded import LoadedRecord
    from sessionlocker.core.locker import Locker
    from sessionlocker.core.migrations import Migrations, reconcile
    from sessionlocker.core.modes import Attempt, LoadMode, Mode, ModeName
    from sessionlocker.core.record import Lock, Message
    from sessionlocker.core.snapshot import SaveReason, Snapshot
    from sessionlocker.core.spec import Spec
    from sessionlocker.core.states import Status
    from sessionlocker.drivers.aio import AsyncLockerService, Profile
    from sessionlocker.drivers.closing import CloseReport
    from sessionlocker.drivers.easy import EasyProfile, EasyStore
    from sessionlocker.drivers.health import StoreFailure
    from sessionlocker.drivers.service import LockerService
    from sessionlocker.errors import (
        AlreadyOpen,
        Conflict,
        CorruptRecord,
        DataError,
        InvalidData,
        LockError,
        LockLost,
        LockUnavailable,
        MessageError,
        MigrationError,
        NewerSchema,
        RecordTooLarge,
        SessionLockerError,
        StoreError,
        Throttled,
        UnhandledMessage,
        UnstorableData,
        UsageError,
    )
    from sessionlocker.history import PastVersion
    from sessionlocker.purchases import Credit, Decision, Purchaser, Receipt
    from sessionlocker.stores import (
        AsyncStore,
        MemoryStore,
        SQLiteStore,
        Store,
        open_async_store,
        open_store,
    )
    from sessionlocker.stores.postgresql import PostgreSQLStore
    from sessionlocker.stores.postgresql._async import AsyncPostgreSQLStore
    from sessionlocker.stores.redis import RedisStore
    from sessionlocker.stores.redis._async import AsyncRedisStore
    from sessionlocker.stores.redis._async_cluster import AsyncRedisClusterStore
    from sessionlocker.stores.redis._cluster import RedisClusterStore
    from sessionlocker.trades import Trades

__all__ = [
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
]

# Where each public name is defined: the module imported when the name is first used.
_HOMES: dict[str, tuple[str, ...]] = {
    "sessionlocker.core.handles": ("Handle", "Outcome"),
    "sessionlocker.core.loaded": ("LoadedRecord",),
    "sessionlocker.core.locker": ("Locker",),
    "sessionlocker.core.migrations": ("Migrations", "reconcile"),
    "sessionlocker.core.modes": ("Attempt", "LoadMode", "Mode", "ModeName"),
    "sessionlocker.core.record": ("Lock", "Message"),
    "sessionlocker.core.snapshot": ("SaveReason", "Snapshot"),
    "sessionlocker.core.spec": ("Spec",),
    "sessionlocker.core.states": ("Status",),
    "sessionlocker.drivers.aio": ("AsyncLockerService", "Profile"),
    "sessionlocker.drivers.closing": ("CloseReport",),
    "sessionlocker.drivers.easy": ("EasyProfile", "EasyStore"),
    "sessionlocker.drivers.health": ("StoreFailure",),
    "sessionlocker.drivers.service": ("LockerService",),
    "sessionlocker.errors": (
        "AlreadyOpen",
        "Conflict",
        "CorruptRecord",
        "DataError",
        "InvalidData",
        "LockError",
        "LockLost",
        "LockUnavailable",
        "MessageError",
        "MigrationError",
        "NewerSchema",
        "RecordTooLarge",
        "SessionLockerError",
        "StoreError",
        "Throttled",
        "UnhandledMessage",
        "UnstorableData",
        "UsageError",
    ),
    "sessionlocker.history": ("PastVersion",),
    "sessionlocker.purchases": ("Credit", "Decision", "Purchaser", "Receipt"),
    "sessionlocker.stores": (
        "AsyncStore",
        "MemoryStore",
        "SQLiteStore",
        "Store",
        "open_async_store",
        "open_store",
    ),
    "sessionlocker.stores.postgresql._async": ("AsyncPostgreSQLStore",),
    "sessionlocker.stores.redis._async": ("AsyncRedisStore",),
    "sessionlocker.stores.redis._async_cluster": ("AsyncRedisClusterStore",),
    "sessionlocker.stores.redis._cluster": ("RedisClusterStore",),
    "sessionlocker.stores.postgresql": ("PostgreSQLStore",),
    "sessionlocker.stores.redis": ("RedisStore",),
    "sessionlocker.trades": ("Trades",),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
