"""``Spec``: what a kind of record is and how its lockers behave. Checked at creation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from sessionlocker.errors import UsageError

__all__ = ["Spec", "check_key"]

#: Longest key accepted, in characters (Roblox DataStore keys allow 50; we allow more).
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Spec:
    """The configuration of one kind of record.

    ``namespace`` prefixes every stored key (``"players"`` → ``"players/<key>"``);
    ``create`` returns fresh data for a key that has never been stored. Times are in
    seconds and may be sub-second for tests and fast stores:

    - ``lease``: the TTL of the service's session lease. A crashed service's locks can
      be taken over about one lease after its last renewal; renewal happens every third.
    - ``force_timeout``: how long ``force`` waits for a live holder to answer its
      release request before taking over.
    - ``autosave_period``: how often a loaded locker with changes saves (durability only:
      it renews nothing).
    - ``poll_period``: how often a waiting locker looks again at a held record.
    """

    namespace: str
    create: Callable[[], Any]
    _: KW_ONLY
    version: int = 1
    autosave_period: float = 30.0
    lease: float = 10.0
    force_timeout: float = 10.0
    poll_period: float = 1.0

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
