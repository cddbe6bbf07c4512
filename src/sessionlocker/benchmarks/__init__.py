"""The benchmarks (issue 8): what session locking costs over the raw store, and how fast
records change hands, beside the Roblox libraries this design comes from.

- ``throughput``: save throughput of a loaded locker against the raw conditional write;
- ``round_trips``: store requests per lifecycle step (``CountingStore``);
- ``handoff``: handoff latency and takeover time between two processes;
- ``frame``: the cost of ``LockerService.update()`` with many idle lockers;
- ``footprint``: memory per loaded locker beyond its data;
- ``runner.run``: all of them for some store URLs; ``report.markdown``: the tables.

``sessionlocker bench`` and ``bench/run.py`` in the repository run them; the models of
ProfileService and ProfileStore (research code, not installed) live beside ``bench/run.py``
in the repository and run from there only.
"""

from __future__ import annotations

from sessionlocker.benchmarks.common import FULL, QUICK, TINY, Sizes
from sessionlocker.benchmarks.runner import PARTS, errors, run
from sessionlocker.benchmarks.tables import markdown

__all__ = ["FULL", "PARTS", "QUICK", "TINY", "Sizes", "errors", "markdown", "run"]
