"""Retry delays: exponential, capped, with a jitter that needs no random source.

The jitter is derived from the key and the attempt number, so the core stays
deterministic while many lockers that failed together spread their retries.
"""

from __future__ import annotations

import zlib

from sessionlocker.errors import StoreError, Throttled

__all__ = ["retry_delay"]

#: The first retry waits about this long; each further failure doubles it.
FIRST_DELAY = 0.05


def retry_delay(key: str, failures: int, *, cap: float, error: StoreError | None = None) -> float:
    """Seconds to wait after ``failures`` failures in a row (1 for the first)."""
    base = min(cap, FIRST_DELAY * 2.0 ** min(failures - 1, 30))
    spread = zlib.crc32(f"{key}#{failures}".encode()) / 0xFFFFFFFF
    delay = base * (0.5 + 0.5 * spread)
    if error is not None and not error.retryable:
        delay = cap
    if isinstance(error, Throttled):
        delay = max(delay, error.retry_after)
    return delay
