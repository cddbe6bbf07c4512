"""The multi-process simulation behind ``sessionlocker simulate``.

- ``world``: what is stored (player records), their keys and the timings used.
- ``history``: each worker's JSON-lines log of what it loaded and what was confirmed.
- ``worker``: one simulated server, run as its own OS process
  (``python -m sessionlocker.sim.worker``).
- ``fleet``: starting, killing and stopping worker processes.
- ``check``: the invariants checked on the final store contents.
- ``report``: the outcome, as text or JSON.
- ``demo``: the two-worker run with one SIGKILL that ties them together.
"""
