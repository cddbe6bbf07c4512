"""A lease that lapses while the store keeps failing: its lockers go ``lost``.

Without it a holder whose every store call times out (a stopped server) stayed
``loaded`` for ever and ``when_saved`` never answered.
"""

from __future__ import annotations

from typing import Any

from sessionlocker.core.states import Status
from sessionlocker.errors import LockLost, StoreError

from .rig import Rig, new_world, run


class Down:
    """A store whose every call fails with a retryable timeout."""

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("no reply within 1 s", retryable=True, unknown_outcome=True)

    update = put_lease = get_lease = drop_lease = _fail


def test_a_holder_whose_store_keeps_failing_goes_lost_once_its_lease_lapsed() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)  # lease 1.0 s, renewed every third of it
    holder = rig.locker("k")
    holder.acquire("repeat")
    rig.step()
    assert holder.status is Status.LOADED
    holder.data["log"].append("x")
    answers: list[bool] = []
    holder.when_saved(holder.mark_changed(), answers.append)
    rig.store = Down()  # type: ignore[assignment]
    down = clock.now
    run([rig], clock, 0.7)  # past the renew deadline, short of a lease since the renewal
    assert holder.status is Status.LOADED
    assert not holder.is_available(clock.now)
    assert answers == []
    run([rig], clock, down + 1.1 - clock.now)
    assert holder.status is Status.LOST
    assert isinstance(holder.error, LockLost)
    assert "lapsed" in str(holder.error)
    assert answers == [False]


def test_a_holder_whose_store_recovers_in_time_stays_loaded() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock)
    holder = rig.locker("k")
    holder.acquire("repeat")
    rig.step()
    rig.store = Down()  # type: ignore[assignment]
    run([rig], clock, 0.5)
    rig.store = store
    run([rig], clock, 2.0)
    assert holder.status is Status.LOADED
    assert holder.is_available(clock.now)
