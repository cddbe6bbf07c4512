"""The multi-process fleet simulation behind ``sessionlocker simulate``.

- ``world``: what is stored (player records), their keys and the timings used.
- ``server``: what one game server does with its players (play, grants, trades).
- ``worker``: one server as its own OS process (``python -m sessionlocker.sim.worker``).
- ``fleet``: starting, commanding, freezing, killing and restarting server processes.
- ``workload``: players joining, hopping, leaving; purchases, bonuses and trades.
- ``history``: each process's JSON-lines log of what it observed and acknowledged.
- ``check``: the independent checker of the histories against the final store.
- ``run``: one run, from the first server to the report; ``progress`` shows it live.
- ``report``: the outcome, as text or JSON.
"""
