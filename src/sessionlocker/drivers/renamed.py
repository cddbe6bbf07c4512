"""Old public spellings kept as deprecated aliases (issue 16: one word, one meaning).

A service's per-process liveness record is its *lease*; its id was once called
``session_id``, a word that now means one scoped use of a key (``service.session(key)``).
"""

from __future__ import annotations

import warnings

from sessionlocker.errors import UsageError

__all__ = ["LeaseIdAlias", "lease_id_of"]


def lease_id_of(lease_id: str | None, session_id: str | None) -> str | None:
    """``lease_id``, or the deprecated ``session_id`` argument (with a warning)."""
    if session_id is None:
        return lease_id
    if lease_id is not None and lease_id != session_id:
        raise UsageError("give lease_id or its old name session_id, not both")
    warnings.warn(
        "session_id= is deprecated: the argument is now lease_id=", DeprecationWarning, stacklevel=3
    )
    return session_id


class LeaseIdAlias:
    """The deprecated ``session_id`` attribute of both services: now ``lease_id``."""

    lease_id: str

    @property
    def session_id(self) -> str:
        """Deprecated: use ``lease_id``."""
        warnings.warn(
            "session_id is deprecated: the attribute is now lease_id",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.lease_id
