"""Argument checks shared by every store, so all backends refuse the same bad input.

Each check raises ``UsageError`` (nothing was changed) and returns its argument with a
precise type, so a store can write ``key = check_key(key)`` at its boundary.
"""

from __future__ import annotations

import math

from sessionlocker.errors import StoreError, UsageError

__all__ = [
    "check_count",
    "check_expected",
    "check_key",
    "check_lease_id",
    "check_prefix",
    "check_rate",
    "check_seconds",
    "check_ttl",
    "check_value",
    "closed_error",
]


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise UsageError(f"{what} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} must be valid Unicode text (it has a lone surrogate)") from None
    return value


def check_key(key: object) -> str:
    """A key is a non-empty ``str`` that can be stored as UTF-8."""
    return _check_text(key, "key")


def check_prefix(prefix: object) -> str:
    """A key prefix is a ``str``; empty means every key."""
    if not isinstance(prefix, str):
        raise UsageError(f"prefix must be a str, not {type(prefix).__name__}")
    return prefix


def check_lease_id(lease_id: object) -> str:
    """A session id is a non-empty ``str`` that can be stored as UTF-8."""
    return _check_text(lease_id, "session id")


def check_value(value: object, what: str = "value") -> bytes:
    """Stores keep ``bytes`` only; encoding data is the caller's business."""
    if not isinstance(value, bytes):
        raise UsageError(f"{what} must be bytes, not {type(value).__name__}")
    return value


def check_expected(expected: object) -> int | None:
    """An expected revision is an ``int`` or ``None`` (the key must be absent)."""
    if expected is None:
        return None
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise UsageError(f"expected revision must be an int or None, not {type(expected).__name__}")
    return expected


def check_seconds(value: object, what: str) -> float:
    """A duration: a finite number of seconds, zero or more."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{what} must be a finite number of seconds >= 0, not {value!r}")
    return seconds


def check_ttl(ttl: object) -> float:
    """A session's time to live: a finite number of seconds above zero."""
    seconds = check_seconds(ttl, "ttl")
    if seconds <= 0:
        raise UsageError(f"ttl must be above zero, not {ttl!r}")
    return seconds


def check_rate(value: object, what: str) -> float:
    """A probability between 0 and 1 inclusive."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{what} must be a number between 0 and 1, not {type(value).__name__}")
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # also false for NaN
        raise UsageError(f"{what} must be between 0 and 1, not {value!r}")
    return rate


def closed_error() -> StoreError:
    """The error every store raises when used after ``close()``."""
    return StoreError("store is closed", retryable=False)


def check_count(value: object, what: str, minimum: int) -> int:
    """A whole number of at least ``minimum``, else ``UsageError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{what} must be a whole number >= {minimum}, not {value!r}")
    return value
