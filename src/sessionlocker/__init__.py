"""sessionlocker: exclusive, crash-safe ownership of stored records.

A process takes the lock on a record (a player's save, a guild, a cart), autosaves it,
and hands it to the next owner fast; every write is a compare-and-set fenced by an
ever-growing epoch, so a process that lost its lock can never overwrite the new owner.
"""

from sessionlocker.core.handles import Handle, Outcome
from sessionlocker.core.loaded import LoadedRecord
from sessionlocker.core.locker import Locker
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
    LockError,
    LockLost,
    LockUnavailable,
    MessageError,
    SessionLockerError,
    StoreError,
    Throttled,
    UnhandledMessage,
    UnstorableData,
    UsageError,
)
from sessionlocker.history import PastVersion
from sessionlocker.purchases import Credit, Decision, Purchaser, Receipt
from sessionlocker.stores import AsyncStore, Store, open_async_store, open_store
from sessionlocker.trades import Trades

__all__ = [
    "AlreadyOpen",
    "AsyncLockerService",
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
    "LoadMode",
    "LoadedRecord",
    "Lock",
    "LockError",
    "LockLost",
    "LockUnavailable",
    "Locker",
    "LockerService",
    "Message",
    "MessageError",
    "Mode",
    "ModeName",
    "Outcome",
    "PastVersion",
    "Profile",
    "Purchaser",
    "Receipt",
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
]
