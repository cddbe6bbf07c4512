"""The locker state machine: one key, one lock at a time, no I/O.

This file does no I/O and reads no clock. Intent is declared (``acquire``,
``release``, ``force_save``); progress happens only in ``update(now)``, which returns
the store requests to execute, and in ``handle(result, now)``, which takes each
request's result back. A locker has at most one request in flight (its kind is a
``RequestKind``). ``next_deadline()`` says when ``update`` has work again, so a driver
need not look at a locker before then. The legal moves are the table ``TRANSITIONS``
(``core/states.py``); anything else is a bug and raises.

``Locker`` is the public calls and the dispatch (``_step`` and ``handle``); the state
and the moves every phase shares are in ``_machine`` (``Machine``: the fields, the
endings, the callback queue), taking the lock in ``_loading`` (``LoadSteps``), saving,
delivering and releasing in ``_saving`` (``SaveSteps``). What the stored record allows
is decided by the pure transforms in ``transforms`` (run by the store on the record
as it is), which report an outcome the locker acts on. Exactly-once operations, user
ids and tags reach the locker through ``operations.Port`` (``_Port`` below).

Where is it decided:

- a release request: another session writes it with ``transforms.request_release``
  (sent by ``_loading.LoadSteps._held`` in the ``force`` mode); a notification (or the
  service's mailbox) makes the holder's driver call ``notice``, so its next save calls
  the store even with nothing new (``only_if_asked``); ``transforms.save`` reports the
  request in the outcome (``Saved.asked``), and
  ``_saving.SaveSteps._on_save`` defers it (``defer_release_requests``, then
  ``release_requested``) or honours it with ``_hand_off`` (beside it): releasing
  at once, the final save ends in ``_end(Event.REPLACED)`` (``replaced``).
- a takeover: ``_loading.LoadSteps._held`` (the ``steal`` mode, or a ``force`` past
  ``_force_expired``) and ``_on_session`` (the holder's lease expired) call
  ``_take_over_now``; the next acquire (``transforms.acquire`` with ``take_over``)
  takes it, and ``_granted`` fires ``takeover`` (or ``handoff`` after a request).
- lost: a save or acquire outcome ``transforms.Lost`` (another epoch holds the record)
  or a save that found no lock of ours: ``_on_save`` / ``_on_acquire`` call
  ``_machine.Machine._lose`` (ending after any stray acquire of ours: ``_end_after_strays``).
- autosave: ``_saving.SaveSteps._new_save`` (nothing sent when nothing changed and no
  look was asked for); its time is ``_saves.autosave_at``, set after a load and a save.
- lease lapse: ``Locker._step`` calls ``_machine.Machine._lapse`` when our lease lapsed
  while we hold a lock and no request is out; ``_unconfirmed`` (``_loading``) makes a
  grant received across a lapse be confirmed first; ``_stale_check`` makes the next save
  recheck a lock confirmed before the latest lapse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sessionlocker.core._loading import LoadSteps
from sessionlocker.core._machine import ENDED, NEVER
from sessionlocker.core._saving import SaveSteps
from sessionlocker.core.changes import Changes
from sessionlocker.core.lease import Lease
from sessionlocker.core.modes import LoadMode, Mode, check_mode
from sessionlocker.core.operations import OperationCalls, Operations
from sessionlocker.core.protocol import LeaseView, Request, Updated
from sessionlocker.core.record import Message
from sessionlocker.core.spec import D, Spec, check_key
from sessionlocker.core.states import EVENTS, Event, Lifecycle, RequestKind, Status
from sessionlocker.core.storable import encode_data
from sessionlocker.core.tags import TagCalls
from sessionlocker.core.users import UserCalls
from sessionlocker.errors import SessionLockerError, StoreError, UsageError

__all__ = ["Handler", "Host", "Locker"]

Callback = Callable[["Locker[Any]"], None]

#: A remote-change handler: ``handler(locker, message)`` changes ``locker.data`` (and may
#: use the locker's credit and ``send``); all of it is saved in one write.
Handler = Callable[["Locker[Any]", Message], object]


class Host(Protocol):
    """The driver a locker tells about its intent. Both calls must not block."""

    def opening(self, locker: Locker[Any]) -> None:
        """``locker`` is about to acquire; raise ``AlreadyOpen`` to refuse (state unchanged)."""

    def wake(self, locker: Locker[Any]) -> None:
        """``locker`` has work before its last reported deadline; look at it soon."""


class Locker(LoadSteps[D], SaveSteps[D], OperationCalls, UserCalls, TagCalls):
    """Exclusive ownership of one record, as a state machine; ``data`` is a ``D``.

    ``data`` is usable at once: before the load completes it is a transient copy from
    ``Spec.create``; changes made to it through ``edit`` are replayed on the loaded data,
    or, with ``Spec.merge_offline``, the transient copy is merged into the loaded data.
    ``token`` is the fencing epoch while loaded: it grows with every acquire, so other
    systems can refuse a write carrying an older token.

    Saves: ``save_reason`` says why the save being made happens (set before the
    ``before_save`` event) and ``final_save`` whether it is meant to end the lock (true
    once per lock: a release, a handoff or a shutdown); ``last_saved`` is a ``Snapshot``
    of the last committed write (set before the ``saved`` event).

    Exactly-once operations (``apply_once``, ``purchase``, credit, ``send`` and the
    inbox, applied through ``handlers`` by message kind) are in ``operations``. User ids
    (``user_ids``, ``add_user_id``, ``remove_user_id``) are in ``users``; metadata tags
    (``tags``, ``set_tag``, ``remove_tag``) in ``tags``.
    """

    def __init__(
        self,
        key: str,
        spec: Spec[D],
        lease: Lease,
        *,
        host: Host | None = None,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.key = check_key(key)
        self.spec = spec
        self.store_key = spec.store_key(key)
        self.status = Status.IDLE
        self.data = spec.create()
        self.token = None
        self.error = None
        self.failure = None
        self._lease = lease
        self._host = host
        self._callbacks = {name: [] for name in Lifecycle}
        self._queued = []
        self._mode = LoadMode.REPEAT
        self._fresh_json = "null"
        self._fresh = spec.fresh(None)
        self._inflight = None
        self._outbox = None
        self._due = NEVER
        self._failures = 0
        self._changes = Changes()
        self._edits = []
        self._port = _Port(self)
        self._ops = Operations(self._port, {} if handlers is None else handlers, spec.history_limit)
        self._seen = self._look = -1
        #: While True, a release request another session writes is noted
        #: (``release_requested``) and not honoured: the driver's user is in the middle
        #: of a piece of work, and ``release()`` (which clears the request) honours it.
        self.defer_release_requests = False
        self.save_reason = None
        self.final_save = False
        self.last_saved = None
        self._reset_session()

    # ----------------------------------------------------------------- intent

    def acquire(self, mode: Mode = LoadMode.REPEAT) -> None:
        """Start loading. Allowed when idle, lost or failed; raises ``UsageError`` otherwise."""
        if self.status not in ENDED:
            raise UsageError(f"{self.key!r} is {self.status.value}; acquire() needs it idle")
        checked = check_mode(mode)
        fresh = self.spec.create()
        fresh_json = encode_data(fresh)
        if self.spec.validate is not None:
            self.spec.validate(fresh)
        if self._host is not None:
            self._host.opening(self)
        self._move(Event.ACQUIRE)
        self._mode = checked
        self._fresh_json = fresh_json
        self.data = fresh
        self.error = self.failure = None
        self._edits.clear()
        self._ops = Operations(self._port, self._ops.handlers, self.spec.history_limit)
        self._reset_session()
        self.save_reason, self.final_save, self.last_saved = None, False, None
        self._changes.start()
        self._due = float("-inf")
        self._wake()

    def release(self, *, shutdown: bool = False) -> None:
        """Save and release (or cancel a load). Does nothing when already ended or ending.

        ``shutdown``: the service is closing (the last save's reason is ``SHUTDOWN``).
        """
        if self.status in ENDED or self.status is Status.RELEASING:
            return
        self._move(Event.RELEASE)
        self._leaving.shutdown = shutdown
        self._outbox = None
        if self._inflight is None:
            self._due = float("-inf")
        self._wake()

    def force_save(self) -> None:
        """Save at the next update (or right after the load completes)."""
        self._saves.force = True
        if self.status is Status.LOADED and self._inflight is None and self._outbox is None:
            self._due = float("-inf")
            self._wake()

    def poke(self) -> None:
        """Look at the stored record again at the next update (it may have changed)."""
        self.notice(None)

    def notice(self, revision: int | None) -> None:
        """The store says the record was written (at ``revision``, if known): look again,
        unless a result already showed that revision (our own write, say). A look asked
        for while a request is in flight happens right after it.
        """
        self._notice(revision)

    def mark_changed(self) -> int:
        """Note that ``data`` changed; returns the change id for ``when_saved``.

        Returns 0 when no save of this locker can hold the change any more (it is not
        loading or loaded: ended, or ending with its final write sent); ``when_saved(0,
        ...)`` answers False at once.
        """
        return self._mark()

    def edit(self, change: Callable[[D], object]) -> int:
        """Apply ``change(data)`` now; before the load completes, again on the loaded data."""
        change(self.data)
        if self.status in (Status.LOADING, Status.WAITING):
            self._edits.append((True, change))
        return self.mark_changed()

    def when_saved(self, change_id: int, callback: Callable[[bool], None]) -> None:
        """Call back True once a committed write holds the change; False if none ever will."""
        try:
            self._changes.when_saved(change_id, callback, ended=self.status in ENDED)
        except UsageError as exc:
            raise UsageError(f"{exc} on {self.key!r}") from None

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(locker)`` on a lifecycle event; returns a function that stops it."""
        if event not in EVENTS:
            raise UsageError(f"unknown event {event!r}; events are {sorted(EVENTS)}")
        self._callbacks[event].append(callback)
        return lambda: self._callbacks[event].remove(callback)

    def is_available(self, now: float | None = None) -> bool:
        """Loaded, our lease within its renew deadline, and our lock checked since any lapse."""
        return (
            self.status is Status.LOADED and self._lease.available(now) and not self._stale_check()
        )

    @property
    def request_in_flight(self) -> RequestKind | None:
        """The kind of the store request out now (``acquire``, ``confirm``, ``save``,
        ``session``, ``request``, ``deliver``, ``withdraw`` or ``fence``), or ``None``."""
        return self._inflight

    @property
    def release_requested(self) -> bool:
        """Another session asked for the record while ``defer_release_requests`` held it."""
        return self._leaving.asked

    @property
    def changes_pending(self) -> bool:
        """True while some marked change is not yet in a committed write."""
        return self._changes.pending

    # ------------------------------------------------------------------ progress

    def next_deadline(self) -> float | None:
        """When ``update`` will have work; ``None`` while a request is in flight or ended."""
        if self._inflight is not None or self._due == NEVER:
            return None
        return self._due

    def update(self, now: float) -> list[Request]:
        """Make progress; return the store requests to execute now (at most one)."""
        if self._inflight is not None:
            return []
        if self._outbox is None and now >= self._due:
            self._step(now)
        self._fire()
        if self._outbox is None:
            return []
        (self._inflight, request), self._outbox = self._outbox, None
        self._due = NEVER
        return [request]

    def handle(self, result: object, now: float) -> None:
        """Take the result (or the ``StoreError``) of the request ``update`` returned."""
        kind, self._inflight = self._inflight, None
        if kind is None:
            raise UsageError("handle() called with no request in flight")
        if (
            isinstance(result, Updated)
            and kind is not RequestKind.DELIVER
            and result.current is not None
        ):
            self._seen = max(self._seen, result.current.revision)
        if isinstance(result, StoreError):
            self._store_failed(kind, result, now)
        elif kind in (RequestKind.ACQUIRE, RequestKind.CONFIRM) and isinstance(result, Updated):
            self._on_acquire(result, now)
        elif kind is RequestKind.LEASE and isinstance(result, LeaseView):
            self._on_session(result, now)
        elif kind is RequestKind.REQUEST and isinstance(result, Updated):
            self._on_request(result.outcome, now)
        elif kind is RequestKind.SAVE and isinstance(result, Updated):
            self._on_save(result, now)
        elif kind is RequestKind.DELIVER and isinstance(result, Updated):
            self._on_deliver(result.outcome, now)
        elif kind in (RequestKind.WITHDRAW, RequestKind.FENCE):
            self._load.requested = None
            self._load.unsure = False
            self._load.confirm = None
            if kind is RequestKind.FENCE:
                self._load.stray_until = -NEVER
            self._due = now
        else:
            raise UsageError(f"unexpected result {result!r} for a {kind} request")
        look, self._look = self._look, -1
        if look > self._seen and self.status not in ENDED:
            self._saves.to_look = self._saves.to_look or self.status is Status.LOADED
            self._due = min(self._due, now)
        self._fire()

    def _step(self, now: float) -> None:
        if self.status is Status.WAITING:
            self._move(Event.RETRY)
        if self.status is Status.LOADING:
            self._attempt(now)
        elif self.token is not None and self._lease.lapsed(now):
            self._lapse()
        elif self.status is Status.LOADED:
            if self._ops.ledger.deliverable() is not None:
                self._deliver()
            else:
                self._save(now, release=False)
        elif self.status is Status.RELEASING:
            self._release_step(now)
        else:
            self._due = NEVER

    def __repr__(self) -> str:
        return f"<Locker {self.store_key!r} {self.status.value} token={self.token}>"


class _Port:
    """The locker as its ``Operations`` and the ledger calls see it (``operations.Port``):
    the few facts and calls they need, kept off the public ``Locker``."""

    __slots__ = ("owner",)

    def __init__(self, owner: Locker[Any]) -> None:
        self.owner = owner

    @property
    def data(self) -> Any:
        return self.owner.data

    @data.setter
    def data(self, value: Any) -> None:
        self.owner.data = value

    @property
    def key(self) -> str:
        return self.owner.key

    @property
    def status(self) -> Status:
        return self.owner.status

    @property
    def token(self) -> int | None:
        return self.owner.token

    @property
    def error(self) -> SessionLockerError | None:
        return self.owner.error

    @property
    def loading(self) -> bool:
        return self.owner._loading()

    @property
    def writable(self) -> bool:
        return self.owner._writable()

    @property
    def lease_id(self) -> str:
        return self.owner._lease.lease_id

    def wall(self) -> float:
        return self.owner._lease.wall()

    def report(self, error: SessionLockerError) -> None:
        self.owner._report(error)

    def emit_later(self, event: Lifecycle) -> None:
        self.owner._queued.append(event)

    def mark_changed(self) -> int:
        return self.owner.mark_changed()

    def force_save(self) -> None:
        self.owner.force_save()

    def when_saved(self, change_id: int, callback: Callable[[bool], None]) -> None:
        self.owner.when_saved(change_id, callback)

    def edit_meta(self, change: Callable[[], object]) -> int:
        return self.owner._edit_meta(change)
