"""Every exactly-once test runs once per driver (``world.DRIVERS``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .world import DRIVERS, Clock


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_clock(driver: str) -> Iterator[Callable[[], Clock]]:
    """Makes worlds (clocks) on the test's driver; stops their servers afterwards."""
    made: list[Clock] = []

    def make() -> Clock:
        clock = Clock(driver)
        made.append(clock)
        return clock

    yield make
    for clock in made:
        clock.close()
