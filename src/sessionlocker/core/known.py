"""The record a locker last wrote, kept decoded so its next save need not parse it.

A save decodes the stored record only to check the lock and the stamp and to carry the
metadata over; its data is replaced by the new data. When the store hands the save
exactly the bytes of the record the locker last wrote (the usual case: a save with the
revision known), the record it built for that write is used as it is. Any other bytes
(someone else wrote, a conflict brought back what is stored) are decoded as always, so
what a save decides never depends on this: only how fast it decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessionlocker.core.protocol import Versioned
from sessionlocker.core.record import Record, decode

__all__ = ["Known", "decode_known", "known_after"]


@dataclass(frozen=True, slots=True)
class Known:
    """Stored bytes and the record they decode to, its ``data`` left out (a save
    replaces it); a release request, which writes the data back, keeps it."""

    value: bytes
    record: Record


def known_after(
    written: Record | None, current: Versioned, before: Known | None, seen: Record | None = None
) -> Known | None:
    """What is known after a save that wrote ``written`` (None: it wrote nothing), with
    ``current`` stored now; ``seen`` is what a save that wrote nothing decoded of it."""
    if written is not None:
        return Known(current.value, written)
    if seen is not None:
        return Known(current.value, seen)
    if before is not None and current.value == before.value:
        return before
    return None


def decode_known(value: bytes, known: Known | None) -> Record:
    """``decode(value)``, or the record of ``known`` when those are its bytes."""
    if known is not None and (value is known.value or value == known.value):
        return known.record
    return decode(value)
