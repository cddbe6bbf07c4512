"""What only the memory store promises: its injectable clock."""

from __future__ import annotations

from backends import FakeClock
from sessionlocker.core.protocol import LeaseView
from sessionlocker.stores import MemoryStore


def test_expiry_is_exact_on_the_injected_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.put_lease("s", 5.0, b"info")
    clock.advance(4.5)
    assert store.get_lease("s").expired is False
    clock.advance(0.5)
    assert store.get_lease("s") == LeaseView(exists=True, expired=True, version=1, ttl=5.0)


def test_default_clock_is_monotonic() -> None:
    store = MemoryStore()
    store.put_lease("s", 60.0, b"")
    assert store.get_lease("s").expired is False
