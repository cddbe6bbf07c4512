"""``Spec``: what a kind of record is and how its lockers behave. Checked at creation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Generic

from sessionlocker.core.migrations import KeepsHistory, Migrations, fill_missing
from sessionlocker.core.record import Record
from sessionlocker.core.validation import Validator, make_validator
from sessionlocker.errors import MigrationError, UsageError

__all__ = ["D", "Spec", "check_key"]

if TYPE_CHECKING:  # a default (PEP 696): a bare ``Spec`` or ``Locker`` means ``[Any]``
    from typing_extensions import TypeVar

    D = TypeVar("D", default=Any)
else:
    from typing import TypeVar

    #: The type of a record's data: what ``Spec.create`` returns.
    D = TypeVar("D")

#: Longest key accepted, in characters (Roblox DataStore keys allow 50; we allow more).
MAX_KEY_LENGTH = 200

#: Roblox's DataStore value limit, our default record size limit.
DEFAULT_MAX_RECORD_BYTES = 4_000_000


@dataclass(frozen=True)
class Spec(Generic[D]):
    """The configuration of one kind of record, generic in the type of its data.

    The data type is inferred from ``create`` (``Spec("players", PlayerData)`` is a
    ``Spec[PlayerData]``), and the lockers, sessions and profiles of the spec carry it:
    ``profile.data`` is a ``PlayerData`` to a type checker.

    ``namespace`` prefixes every stored key (``"players"`` → ``"players/<key>"``);
    ``create`` returns fresh data for a key that has never been stored. Times are in
    seconds and may be sub-second for tests and fast stores:

    - ``lease``: the TTL of the service's lease. A crashed service's locks can
      be taken over about one lease after its last renewal; renewal happens every third.
    - ``force_timeout``: how long ``force`` waits for a live holder to answer its
      release request before taking over.
    - ``autosave_period``: how often a loaded locker with changes saves (durability only:
      it renews nothing).
    - ``poll_period``: how often a waiting locker looks again at a held record.

    KeepsHistory: ``version`` is the data version this code writes; ``migrations`` must lead
    from version 1 up to it (checked here, so a gap fails at start-up). ``validator``
    (a callable, or a dataclass, pydantic model or msgspec Struct type) is run before
    every save. ``max_record_bytes`` bounds the stored record; ``compress_above`` stores
    data of at least that many bytes of JSON zlib-compressed (``None``: never).

    ``linger`` (seconds, 0: off) keeps a record the async ``session()`` released loaded
    for that long, so the next burst of requests for it does not load it again.

    ``history_limit`` bounds each exactly-once history kept in the record (operation
    ids, and purchases): an id that fell out of it, 100 newer ones later by default, is
    no longer recognised, so an operation redelivered that late would apply again.

    ``reconcile``: at every load, after migrations, fill the keys of ``create()``'s data
    that the stored data lacks (recursively through dicts; existing values are never
    overwritten; see ``migrations.fill_missing``), so a key added to ``create()`` reaches old
    records without a new version. A filled record is written with the load's lock.

    ``merge_offline(loaded_data, offline_data) -> data``: how changes made to a locker's
    transient data before its load completed reach the loaded data. ``offline_data`` is
    the transient copy as it is when the load completes (direct changes and ``edit``
    calls alike); the data becomes what the merge returns (saved soon when it differs
    from the loaded data). With it, ``edit`` calls made while loading are not replayed
    on the loaded data (their effect is in ``offline_data``); without it they are, and
    direct changes to the transient copy are dropped.
    """

    namespace: str
    create: Callable[[], D]
    _: KW_ONLY
    version: int = 1
    autosave_period: float = 30.0
    lease: float = 10.0
    force_timeout: float = 10.0
    poll_period: float = 1.0
    migrations: Migrations = field(default_factory=Migrations)
    validator: object = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    compress_above: int | None = None
    history_limit: int = 100
    reconcile: bool = False
    merge_offline: Callable[[Any, Any], Any] | None = None
    linger: float = 0.0
    validate: Validator | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        namespace = self.namespace
        if not isinstance(namespace, str) or not namespace or "/" in namespace:
            raise UsageError(f"namespace must be a non-empty string without '/', not {namespace!r}")
        if not callable(self.create):
            raise UsageError(f"create must be a callable returning fresh data, not {self.create!r}")
        version = self.version
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UsageError(f"version must be a whole number >= 1, not {version!r}")
        for name in ("autosave_period", "lease", "force_timeout", "poll_period"):
            object.__setattr__(self, name, _seconds(name, getattr(self, name)))
        if not isinstance(self.migrations, Migrations):
            raise UsageError(f"migrations must be a Migrations builder, not {self.migrations!r}")
        self.migrations.check(version)
        object.__setattr__(self, "validate", make_validator(self.validator))
        _positive_int("max_record_bytes", self.max_record_bytes)
        _positive_int("history_limit", self.history_limit)
        if isinstance(self.linger, bool) or self.linger != 0:  # 0: off
            object.__setattr__(self, "linger", _seconds("linger", self.linger))
        if self.compress_above is not None:
            _positive_int("compress_above", self.compress_above)
        if not isinstance(self.reconcile, bool):
            raise UsageError(f"reconcile must be True or False, not {self.reconcile!r}")
        if self.merge_offline is not None and not callable(self.merge_offline):
            raise UsageError(f"merge_offline must be callable or None, not {self.merge_offline!r}")

    def upgrade(self, record: Record) -> Record:
        """The record migrated and patched up to ``version`` (or newer but compatible),
        then reconciled with ``create()``'s data when ``reconcile`` is set.

        Raises ``NewerSchema`` or ``MigrationError``; the record given is not changed.
        """
        stored = KeepsHistory(record.data, record.schema, record.patch, record.compatible)
        done = self.migrations.upgrade(stored, self.version)
        data = done.data
        if self.reconcile:
            try:
                data = fill_missing(data, self.create())
            except Exception as exc:  # the user's create(); refuse the load, write nothing
                raise MigrationError("reconcile", exc) from exc
        if done is stored and data is record.data:
            return record
        return record.with_(
            data=data, schema=done.schema, patch=done.patch, compatible=done.compatible
        )

    def fresh(self, data: D | None) -> Record:
        """A new record holding ``data`` made by ``create`` at this version."""
        patch, compatible = self.migrations.fresh(self.version)
        return Record(data=data, schema=self.version, patch=patch, compatible=compatible)

    def store_key(self, key: str) -> str:
        """Where ``key`` of this spec lives in the store."""
        return f"{self.namespace}/{key}"


def _seconds(name: str, value: object) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise UsageError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{name} must be a whole number of bytes >= 1, not {value!r}")


def check_key(key: object) -> str:
    """Return ``key`` if it is a usable record key, else raise ``UsageError``."""
    if not isinstance(key, str):
        raise UsageError(f"a key is a string, not {type(key).__name__}")
    if not key:
        raise UsageError("a key cannot be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise UsageError(f"a key is at most {MAX_KEY_LENGTH} characters, this one has {len(key)}")
    if not key.isprintable():
        raise UsageError(f"a key must be printable text, not {key!r}")
    return key
