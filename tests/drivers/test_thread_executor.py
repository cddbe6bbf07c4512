"""``ThreadExecutor``: up to ``workers`` threads, every call run and reported once."""

from __future__ import annotations

import threading
import time

import pytest

from sessionlocker.drivers import ThreadExecutor
from sessionlocker.errors import UsageError


def test_calls_run_on_at_most_workers_threads_and_shutdown_waits_for_them() -> None:
    executor = ThreadExecutor(3)
    lock = threading.Lock()
    running, most, threads = 0, 0, set()
    results: list[object] = []

    def call(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.current_thread().name)
        time.sleep(0.01)
        with lock:
            running -= 1
        return n

    for n in range(30):
        executor.submit(lambda n=n: call(n), results.append)
    executor.shutdown()
    assert sorted(results) == list(range(30))  # shutdown let every submitted call finish
    assert 2 <= most <= 3
    assert len(threads) <= 3


def test_a_failing_done_callback_does_not_stop_the_worker() -> None:
    executor = ThreadExecutor(1)
    seen: list[object] = []

    def done(result: object) -> None:
        if result == "bad":
            raise RuntimeError("callback failed")
        seen.append(result)

    executor.submit(lambda: "bad", done)
    executor.submit(lambda: "good", done)
    executor.shutdown()
    assert seen == ["good"]


def test_workers_must_be_at_least_one() -> None:
    with pytest.raises(UsageError, match="workers must be at least 1"):
        ThreadExecutor(0)
