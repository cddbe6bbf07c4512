"""Drivers run the pure core against a store: the frame-loop ``LockerService``."""

from sessionlocker.drivers.executor import Executor, ThreadExecutor
from sessionlocker.drivers.service import LockerService

__all__ = ["Executor", "LockerService", "ThreadExecutor"]
