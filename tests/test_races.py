"""Several services race on one store: the order of store calls, lost replies, crashes,
restarts and skewed clocks are chosen by Hypothesis; safety must hold throughout.

The world: one ``MemoryStore`` whose own clock is the test's *true time*; three slots,
each holding a live ``LockerService`` (its own session id, its own ``LossyExecutor``,
its own clock ``offset + rate * true time`` with rates within ±5 %) or nothing after a
crash. Every store call waits until a rule runs it, loses its reply, or drops it.

Invariants (see ``History`` and ``RaceMachine``):

1. Nothing acknowledged is lost: every token whose ``when_saved`` said True is in the
   stored data of its key, after every step (checked with ``store.read``).
2. Fencing: every committed write is checked against the one before it on that key.
   An acquisition bumps the epoch by exactly one and names the writer; each epoch has
   one owner; the epoch never goes down; a write that changes the data (a new
   ``stamp``) comes from the session that held the lock at exactly that epoch when it
   committed, in the newest epoch; any other write leaves the data alone.
3. Data never goes backwards: each committed token list extends the previous one.
4. Exclusive availability, at every step and on both keys: a locker that is loaded and
   ``is_available`` by its own clock holds the lock the store shows, at its epoch, so
   no two lockers are available for one key (a holder goes ``releasing`` before its
   releasing write, and quiet before anyone may take over its lapsed lease). The one
   exception, by design: a lock taken from a live holder without its cooperation
   (``steal``, or ``force`` after ``force_timeout``); the old holder finds out at its
   next save.
5. No stale ``loaded``: a locker announces ``loaded`` only for the newest epoch of its
   key (again unless a steal or a force timeout took that epoch meanwhile).
6. No orphan locks: a lock in the store that names a live service's session has a
   locker of that service for its key (a locker whose acquire may still land late
   stays ``releasing`` until that acquire has expired, and then clears it).
7. Forces hand off: a ``force`` against a loaded holder ends in its cooperative
   handoff (its own write clears its lock with every change its locker made, and that
   locker does not end ``lost``) unless, while the request stood, the holder or the
   taker was frozen (true time moved while it ran no frames) or cut off (a call of
   theirs lost, held back, hung, or a crash); see ``ForceWindows``. The ``calm`` rule
   drives every service long enough for such a request to be answered or time out.
8. Hand-over (liveness, at teardown): once faults stop and every live locker is
   released, a new service loads both keys within a few seconds and finds every
   acknowledged token in them.

Faults: a call's reply may be lost after or before the call ran (the caller gets an
unknown-outcome ``StoreError``, as from a client timeout); a record write may also be
held back and reach the store later, after its caller was told it timed out (``late``,
then ``land``); once per run a call may hang for ever (``ManualExecutor.drop_next``); a
process may crash with its pending calls run or not.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from races_support import (
    Commit,
    CommitLog,
    ForceWindows,
    LossyExecutor,
    RecordingStore,
    SkewedClock,
    TrueTime,
)
from sessionlocker import Locker, LockerService, Spec, Status
from sessionlocker.core.record import Lock, Record, decode
from sessionlocker.stores import MemoryStore

SPEC = Spec(
    "races",
    lambda: {"tokens": []},
    lease=1.0,
    autosave_period=0.3,
    force_timeout=0.6,
    poll_period=0.1,
)
CALM, WILD = "calm", "wild"
KEYS = (CALM, WILD)
MODES = {CALM: ("repeat", "cancel"), WILD: ("repeat", "force", "steal", "cancel")}
SLOTS = 3
OPENINGS = tuple((key, mode) for key in KEYS for mode in MODES[key])
#: How a pending call completes (``run`` is the common case, hence repeated).
OUTCOMES = (
    "run",
    "run",
    "run",
    "run",
    "lose-after",
    "lose-before",
    "late",
    "hang-after",
    "hang-before",
)
#: True seconds a hand-over may take at the end: a crashed holder's lease (1 s of the
#: store's time), the waiter's polling, and its back-off after earlier faults.
HAND_OVER = 3.0
#: After a late record write, a locker may hold the hand-over back until its stray
#: acquire expires: its validity, one lease, doubled after each ``Expired`` attempt; a run
#: lasts under 32 s of true time, so no validity reaches 32 leases.
LATE_HAND_OVER = HAND_OVER + 32 * 1.0
#: Crashes per run, so that most of a run is spent racing rather than restarting.
MAX_CRASHES = 2


def tokens_of(record: Record) -> list[str]:
    tokens = record.data["tokens"]
    assert isinstance(tokens, list)
    return tokens


def stored_tokens(store: MemoryStore, key: str) -> list[str]:
    current = store.read(SPEC.store_key(key))
    return [] if current is None else tokens_of(decode(current.value))


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """What was committed and acknowledged, and every fencing rule a commit broke.

    Commits are checked as they happen, from inside the store call; a failed check is
    recorded in ``problems`` rather than raised (the driver would turn an exception
    raised in a store call into a ``StoreError``), and the machine asserts it is empty.
    """

    store: MemoryStore
    problems: list[str] = field(default_factory=list)
    last: dict[str, Record] = field(default_factory=dict)
    #: (store key, epoch) -> the session whose committed write acquired that epoch
    owner: dict[tuple[str, int], str] = field(default_factory=dict)
    #: store key -> tokens whose when_saved said True
    acked: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: token -> the one answer when_saved gave
    answers: dict[str, bool] = field(default_factory=dict)
    commits: int = 0
    #: (session, store key) -> the load mode its locker was opened with
    modes: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (store key, epoch) taken from its holder by a steal or a force (no cooperation)
    taken: set[tuple[str, int]] = field(default_factory=set)

    def on_commit(self, commit: Commit) -> None:
        self.commits += 1
        where = f"commit {self.commits} (rev {commit.revision}) of {commit.key} by {commit.writer}"
        try:
            self._check(commit, where)
        except Exception as exc:  # keep going; the machine reports it after this step
            self.problems.append(f"{where}: check raised {exc!r}")

    def _problem(self, ok: bool, where: str, what: str) -> None:
        if not ok:
            self.problems.append(f"{where}: {what}")

    def _check(self, commit: Commit, where: str) -> None:
        key, writer, check = commit.key, commit.writer, self._problem
        rec = decode(commit.value)
        tokens = tokens_of(rec)
        prev = self.last.get(key)
        self.last[key] = rec
        check(len(set(tokens)) == len(tokens), where, f"duplicate tokens {tokens}")
        if prev is None:
            lock = rec.lock
            check(
                lock is not None and (lock.session, lock.epoch) == (writer, 1) and rec.epoch == 1,
                where,
                f"a new record must be created locked by its writer at epoch 1: {rec}",
            )
            check(rec.stamp is None and tokens == [], where, f"a new record has fresh data: {rec}")
            self.owner[(key, 1)] = writer
            return
        before = tokens_of(prev)
        # 3. data never goes backwards
        check(tokens[: len(before)] == before, where, f"tokens went from {before} to {tokens}")
        # 2. fencing
        check(rec.epoch >= prev.epoch, where, f"epoch went down {prev.epoch} -> {rec.epoch}")
        lock = rec.lock
        acquired = lock is not None and (
            prev.lock is None or (prev.lock.session, prev.lock.epoch) != (lock.session, lock.epoch)
        )
        if lock is not None and acquired:
            check(lock.session == writer, where, f"{writer} wrote a lock for {lock.session}")
            check(
                rec.epoch == lock.epoch == prev.epoch + 1,
                where,
                f"an acquisition must bump the epoch by one: {prev.epoch} -> {rec.epoch}",
            )
            earlier = self.owner.get((key, rec.epoch))
            check(earlier is None, where, f"epoch {rec.epoch} acquired twice ({earlier})")
            self.owner[(key, rec.epoch)] = writer
            if prev.lock is not None and self.modes.get((writer, key)) in ("steal", "force"):
                self.taken.add((key, prev.lock.epoch))
            check(rec.stamp == prev.stamp, where, "an acquisition must not stamp the record")
            check(rec.data == prev.data, where, "an acquisition must not change the data")
        else:
            check(rec.epoch == prev.epoch, where, "the epoch moved without an acquisition")
        stamp = rec.stamp
        if stamp != prev.stamp:
            # a holder's save (possibly its final one, which clears the lock)
            if stamp is None:
                check(False, where, "a stamp was removed")
                return
            check(stamp.session == writer, where, f"{writer} wrote a stamp of {stamp.session}")
            check(
                prev.held_by(writer, stamp.epoch),
                where,
                f"stale write: {writer} saved in epoch {stamp.epoch} "
                f"but the lock was {prev.lock} (epoch {prev.epoch})",
            )
            check(
                stamp.epoch == rec.epoch == max(prev.epoch, rec.epoch),
                where,
                f"a save of epoch {stamp.epoch} committed after epoch {prev.epoch}",
            )
            check(
                self.owner.get((key, stamp.epoch)) == writer,
                where,
                f"epoch {stamp.epoch} belongs to {self.owner.get((key, stamp.epoch))}",
            )
            old = prev.stamp
            if old is not None and (old.session, old.epoch) == (stamp.session, stamp.epoch):
                check(stamp.seq > old.seq, where, f"save number went {old.seq} -> {stamp.seq}")
            foreign = [t for t in tokens[len(before) :] if not t.startswith(writer + "#")]
            check(not foreign, where, f"{writer} saved tokens it never made: {foreign}")
        elif not acquired:
            check(rec.data == prev.data, where, "data changed without a save")
        if prev.lock is not None and lock is None:
            # a holder's final save, or the holder's own session withdrawing a lock it may
            # have taken without knowing (a cancelled load whose acquire reply was lost)
            withdrawn = prev.lock.session == writer and rec.data == prev.data
            check(
                stamp != prev.stamp or withdrawn,
                where,
                "the lock was cleared by a write that is no save",
            )

    def answer(self, store_key: str, token: str, saved: bool) -> None:
        """``when_saved`` answered for ``token``."""
        if token in self.answers:
            self.problems.append(f"when_saved answered twice for {token}")
        self.answers[token] = saved
        if not saved:
            return
        current = self.store.read(store_key)
        now = [] if current is None else tokens_of(decode(current.value))
        if token not in now:
            self.problems.append(f"{token} acknowledged but not in the stored {now}")
        self.acked[store_key].add(token)

    def loaded(self, session: str, locker: Locker) -> None:
        """A locker of ``session`` says it loaded: its epoch must be one it acquired."""
        token = locker.token
        owner = None if token is None else self.owner.get((locker.store_key, token))
        if owner != session:
            self.problems.append(
                f"{session} loaded {locker.store_key} at epoch {token}, acquired by {owner}"
            )
        current = self.store.read(locker.store_key)
        newest = None if current is None else decode(current.value).epoch
        taken = (locker.store_key, token) in self.taken
        if token is not None and newest is not None and newest > token and not taken:
            self.problems.append(
                f"{session} announced loaded for {locker.store_key} at epoch {token}, "
                f"superseded by epoch {newest}"
            )


# --------------------------------------------------------------------------- world


@dataclass
class Node:
    """One live service and what the test controls of it."""

    slot: int
    session: str
    clock: SkewedClock
    executor: LossyExecutor
    service: LockerService

    def __repr__(self) -> str:
        return f"<{self.session} pending={self.executor.pending}>"


class World:
    """True time, the shared store, the commit log and the services on it."""

    def __init__(self, spec: Spec = SPEC) -> None:
        self.spec = spec
        self.true = TrueTime()
        self.store = MemoryStore(clock=self.true)
        self.history = History(self.store)
        #: the live services by session
        self.services: dict[str, Node] = {}
        #: (session, store key) -> the tokens its current locker made
        self.made: dict[tuple[str, str], list[str]] = {}
        self.forces = ForceWindows(
            self.locker_of, self.made, self.history.modes, self.true, spec.force_timeout / 1.05
        )
        self.log = CommitLog(listeners=[self.history.on_commit, self.forces.on_commit])
        self.tokens = itertools.count(1)

    def locker_of(self, session: str, store_key: str) -> Locker | None:
        node = self.services.get(session)
        if node is None:
            return None
        return next((lk for lk in node.service.lockers() if lk.store_key == store_key), None)

    def service(
        self, session: str, *, slot: int = 0, offset: float = 0.0, rate: float = 1.0
    ) -> Node:
        clock = SkewedClock(self.true, offset, rate)
        wall = SkewedClock(self.true, 1.7e9 + offset, rate)
        executor = LossyExecutor()
        service = LockerService(
            RecordingStore(self.store, self.log, session),
            self.spec,
            session,
            clock=clock,
            wall=wall,
            executor=executor,
        )
        node = Node(slot, session, clock, executor, service)
        self.services[session] = node
        return node

    def open(self, node: Node, key: str, mode: str) -> Locker:
        locker = node.service.locker(key)
        store_key = locker.store_key
        locker.on("loaded", lambda lk: self.history.loaded(node.session, lk))
        for end in ("released", "replaced", "lost"):
            locker.on(end, lambda _, end=end: self.forces.ended(node.session, store_key, end))
        self.history.modes[(node.session, store_key)] = mode
        self.made[(node.session, store_key)] = []
        self.forces.handed.pop((node.session, store_key), None)
        locker.acquire(mode)
        return locker

    def change(self, node: Node, locker: Locker) -> str:
        """Append a new token (``edit`` replays it on the loaded data if not loaded yet)."""
        token = f"{node.session}#{next(self.tokens)}"
        change = locker.edit(lambda data: data["tokens"].append(token))
        store_key = locker.store_key
        self.made[(node.session, store_key)].append(token)
        locker.when_saved(change, lambda ok: self.history.answer(store_key, token, ok))
        return token

    def pump(self, *nodes: Node, rounds: int = 1) -> None:
        """Frames for each node, running every call they send, in order."""
        for _ in range(rounds):
            for node in nodes:
                node.service.update()
                node.executor.run_all()
            for node in nodes:
                node.service.update()

    def assert_ok(self) -> None:
        problems = self.history.problems + self.forces.problems
        assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- machine


class RaceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.nodes: list[Node | None] = [None] * SLOTS
        self.generation = 0
        self.hangs = 0
        self.crashes = 0
        #: Record writes held back after their caller was told they timed out.
        self.late: list[Callable[[], object]] = []
        self.lates = 0

    # ---------------------------------------------------------------- helpers

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node is not None]

    def start(self, slot: int, offset: float, rate: float) -> None:
        self.generation += 1
        session = f"s{slot}g{self.generation}"
        self.nodes[slot] = self.world.service(session, slot=slot, offset=offset, rate=rate)

    def by_session(self, session: str) -> Node:
        return next(node for node in self.live() if node.session == session)

    def draw_node(self, data: st.DataObject, nodes: list[Node]) -> Node:
        session = data.draw(st.sampled_from([node.session for node in nodes]), label="node")
        return self.by_session(session)

    def draw_locker(self, data: st.DataObject, *statuses: Status) -> tuple[Node, Locker]:
        choices = [(node.session, locker.key) for node, locker in self.lockers(*statuses)]
        session, key = data.draw(st.sampled_from(choices), label="node, key")
        node = self.by_session(session)
        locker = node.service.get(key)
        assert locker is not None
        return node, locker

    def busy(self) -> list[Node]:
        return [node for node in self.live() if node.executor.pending]

    def lockers(self, *statuses: Status) -> list[tuple[Node, Locker]]:
        return [
            (node, locker)
            for node in self.live()
            for locker in node.service.lockers()
            if locker.status in statuses
        ]

    def closed_slots(self) -> list[tuple[Node, str]]:
        return [(n, k) for n in self.live() for k in KEYS if n.service.get(k) is None]

    # ---------------------------------------------------------------- rules

    @initialize(
        skews=st.lists(
            st.tuples(st.floats(-5.0, 5.0), st.floats(0.95, 1.05)),
            min_size=SLOTS,
            max_size=SLOTS,
        ),
        opens=st.lists(st.tuples(st.integers(0, SLOTS - 1), st.sampled_from(OPENINGS))),
        rounds=st.integers(0, 3),
    )
    def boot(
        self,
        skews: list[tuple[float, float]],
        opens: list[tuple[int, tuple[str, str]]],
        rounds: int,
    ) -> None:
        """Start the services, open some lockers, and maybe let them load undisturbed."""
        for slot, (offset, rate) in enumerate(skews):
            self.start(slot, offset, rate)
        for slot, (key, mode) in opens:
            node = self.nodes[slot]
            if node is not None and node.service.get(key) is None:
                self.world.open(node, key, mode)
        self.world.pump(*self.live(), rounds=rounds)

    @rule(dt=st.floats(0.01, 0.5))
    def advance(self, dt: float) -> None:
        self.world.true.advance(dt)
        self.world.forces.disturb()  # every service frozen meanwhile

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        node = self.draw_node(data, self.live())
        node.service.update()

    @precondition(lambda self: self.live())
    @rule(data=st.data(), rounds=st.integers(1, 6), dt=st.sampled_from((0.0, 0.05, 0.1)))
    def pump(self, data: st.DataObject, rounds: int, dt: float) -> None:
        """Some live services run frames with every call they send answered in order,
        ``dt`` apart (the others stay still: their calls wait)."""
        sessions = [node.session for node in self.live()]
        chosen = data.draw(st.sets(st.sampled_from(sessions), min_size=1), label="nodes")
        nodes = [self.by_session(s) for s in sorted(chosen)]
        if dt:
            frozen = [node.session for node in self.live() if node.session not in chosen]
            if frozen:
                self.world.forces.disturb(*frozen)
        for _ in range(rounds):
            self.world.true.advance(dt)
            self.world.pump(*nodes)

    @precondition(lambda self: self.live())
    @rule(rounds=st.integers(4, 12))
    def calm(self, rounds: int) -> None:
        """A calm spell: every live service runs frames 0.1 s apart with every call
        answered, long enough for a force request to be answered or time out."""
        for _ in range(rounds):
            self.world.true.advance(0.1)
            self.world.pump(*self.live())

    @precondition(lambda self: self.busy())
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def io(self, data: st.DataObject, outcome: str) -> None:
        """One pending call completes (any one, not only the oldest), or its reply is lost.

        ``lose-*``: the call reaches the store or not, then the caller gets an
        unknown-outcome ``StoreError`` (a client timeout). ``hang-*``: no reply ever comes
        (``ManualExecutor.drop_next``): the locker or lease waits forever; once per run.
        """
        node = self.draw_node(data, self.busy())
        index = data.draw(st.integers(0, node.executor.pending - 1), label="index")
        if outcome.startswith("hang") and self.hangs >= 1:
            outcome = outcome.replace("hang", "lose")
        if outcome == "late" and not node.executor.is_record_write(index):
            outcome = "lose-before"
        if outcome != "run":
            self.world.forces.disturb(node.session)  # cut off
        if outcome == "late":
            self.lates += 1
            self.late.append(node.executor.time_out_late(index))
        elif outcome == "run":
            node.executor.run_next(index)
        elif outcome.startswith("lose"):
            node.executor.time_out(execute=outcome.endswith("after"), index=index)
        else:
            self.hangs += 1
            node.executor.drop_next(execute=outcome.endswith("after"), index=index)

    @precondition(lambda self: self.late)
    @rule(data=st.data())
    def land(self, data: st.DataObject) -> None:
        """A record write held back by ``late`` reaches the store now (its result is
        for nobody: its caller was told it timed out)."""
        index = data.draw(st.integers(0, len(self.late) - 1), label="late call")
        self.late.pop(index)()
        self.world.forces.disturb()

    @precondition(lambda self: self.closed_slots())
    @rule(data=st.data())
    def open(self, data: st.DataObject) -> None:
        choices = [(node.session, key) for node, key in self.closed_slots()]
        session, key = data.draw(st.sampled_from(choices), label="node, key")
        node = self.by_session(session)
        mode = data.draw(st.sampled_from(MODES[key]), label="mode")
        self.world.open(node, key, mode)

    @precondition(lambda self: self.lockers(Status.LOADED, Status.LOADING, Status.WAITING))
    @rule(data=st.data(), force=st.booleans())
    def change(self, data: st.DataObject, force: bool) -> None:
        """A new token; while not loaded yet, an offline edit replayed after the load."""
        node, locker = self.draw_locker(data, Status.LOADED, Status.LOADING, Status.WAITING)
        self.world.change(node, locker)
        if force:
            locker.force_save()

    @precondition(lambda self: self.lockers(Status.LOADED, Status.LOADING, Status.WAITING))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        _, locker = self.draw_locker(data, Status.LOADED, Status.LOADING, Status.WAITING)
        locker.release()

    @precondition(lambda self: self.live() and self.crashes < MAX_CRASHES)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The process dies: its pending calls reach the store or not; it is never called again."""
        node = self.draw_node(data, self.live())
        while node.executor.pending:
            execute = data.draw(st.booleans(), label="executed")
            node.executor.drop_next(execute=execute)
        self.nodes[node.slot] = None
        del self.world.services[node.session]
        self.world.forces.disturb(node.session)
        self.crashes += 1

    @precondition(lambda self: len(self.live()) < SLOTS)
    @rule(data=st.data(), offset=st.floats(-5.0, 5.0), rate=st.floats(0.95, 1.05))
    def restart(self, data: st.DataObject, offset: float, rate: float) -> None:
        """A new process (a new session id) takes an empty slot."""
        empty = [slot for slot, node in enumerate(self.nodes) if node is None]
        slot = data.draw(st.sampled_from(empty), label="slot")
        self.start(slot, offset, rate)

    def teardown(self) -> None:
        self.late.clear()  # held-back writes that never arrive
        if self.hangs == 0:
            self.hand_over()

    def hand_over(self) -> None:
        """8 (liveness): once faults stop and every live locker is released, a new
        service loads every key within one lease plus polling and retry slack, and
        finds every acknowledged token. Skipped after a ``hang``: a call that never
        returns keeps its locker busy for ever (the driver has no call timeout)."""
        world = self.world
        for node in self.live():
            for locker in node.service.lockers():
                locker.release()
        fresh = world.service("fresh")
        lockers = [world.open(fresh, key, "repeat") for key in KEYS]
        start = world.true.now
        limit = LATE_HAND_OVER if self.lates else HAND_OVER
        while not all(locker.status is Status.LOADED for locker in lockers):
            waited = world.true.now - start
            assert waited < limit, (
                f"no hand-over after {waited:.2f} s: {lockers}, stored locks "
                f"{[self.stored_lock(key) for key in KEYS]}, live {self.live()}"
            )
            world.true.advance(0.05)
            world.pump(*self.live(), fresh)
        for locker in lockers:
            missing = world.history.acked[locker.store_key] - set(locker.data["tokens"])
            assert not missing, f"{locker.key} loaded without acknowledged tokens {missing}"
        world.assert_ok()

    def stored_lock(self, key: str) -> Lock | None:
        current = self.world.store.read(SPEC.store_key(key))
        return None if current is None else decode(current.value).lock

    # ---------------------------------------------------------------- invariants

    @invariant()
    def fencing_holds(self) -> None:
        """2 and 3, checked at each commit (see ``History``)."""
        self.world.assert_ok()

    @invariant()
    def nothing_acknowledged_is_lost(self) -> None:
        """1: every acknowledged token is in the stored data now."""
        history = self.world.history
        for key in KEYS:
            stored = set(stored_tokens(self.world.store, key))
            missing = history.acked[SPEC.store_key(key)] - stored
            assert not missing, f"acknowledged tokens lost from {key}: {sorted(missing)}"

    @invariant()
    def one_available_owner(self) -> None:
        """4: a locker that is loaded and available by its own clock holds the lock the
        store shows, at its epoch: so at most one is available per key. Exempt: an epoch
        taken from its live holder by a steal or a force timeout."""
        for key in KEYS:
            available = [
                (node.session, locker)
                for node in self.live()
                if (locker := node.service.get(key)) is not None
                and locker.status is Status.LOADED
                and locker.is_available(node.clock())
            ]
            lock = self.stored_lock(key)
            for session, locker in available:
                held = lock is not None and (lock.session, lock.epoch) == (session, locker.token)
                taken = (SPEC.store_key(key), locker.token) in self.world.history.taken
                assert held or taken, (
                    f"{session} reports {key} available at epoch {locker.token} but the "
                    f"stored lock is {lock}; available: {[s for s, _ in available]} "
                    f"(true time {self.world.true.now:.3f})"
                )

    @invariant()
    def no_orphan_lock(self) -> None:
        """6: a stored lock naming a live service's session has a locker there."""
        for key in KEYS:
            lock = self.stored_lock(key)
            if lock is None:
                continue
            for node in self.live():
                if node.session == lock.session:
                    assert node.service.get(key) is not None, (
                        f"{key} is locked by {lock} but {node.session} has no locker for it"
                    )


#: ``RACES_EXAMPLES`` / ``RACES_STEPS`` widen the search for a longer hunt than CI's.
RACE_SETTINGS = settings(
    max_examples=int(os.environ.get("RACES_EXAMPLES", "150")),
    stateful_step_count=int(os.environ.get("RACES_STEPS", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.timeout(900)  # generating takes seconds; shrinking a failure may take minutes
def test_races() -> None:
    run_state_machine_as_test(RaceMachine, settings=RACE_SETTINGS)


# --------------------------------------------------------------------------- scenarios


def loaded_node(world: World, session: str, key: str = WILD) -> tuple[Node, Locker]:
    """A service of ``session`` holding ``key``, with no call pending."""
    node = world.service(session)
    locker = world.open(node, key, "repeat")
    world.pump(node, rounds=3)
    assert locker.status is Status.LOADED
    assert node.executor.pending == 0
    return node, locker


def commits_of(world: World, session: str) -> list[Commit]:
    return [c for c in world.log.commits if c.writer == session]


def test_save_reply_lost_after_commit_is_confirmed_once() -> None:
    world = World()
    node, locker = loaded_node(world, "a")
    before = world.store.read(locker.store_key)
    assert before is not None
    answers: list[bool] = []
    token = f"{node.session}#x"
    locker.data["tokens"].append(token)
    locker.when_saved(locker.mark_changed(), answers.append)
    locker.force_save()
    node.service.update()
    assert node.executor.pending == 1
    node.executor.time_out(execute=True)  # the save commits; its reply is lost
    after = world.store.read(locker.store_key)
    assert after is not None
    assert after.revision > before.revision
    node.service.update()
    assert answers == []  # an unknown outcome acknowledges nothing
    for _ in range(20):  # the retry re-reads, finds its own stamp, writes nothing
        world.true.advance(0.05)
        world.pump(node)
    assert answers == [True]
    assert locker.status is Status.LOADED
    final = world.store.read(locker.store_key)
    assert final is not None
    assert final.revision == after.revision
    saves = [c for c in commits_of(world, "a") if token in tokens_of(decode(c.value))]
    assert len(saves) == 1
    world.assert_ok()


def test_save_lost_before_commit_is_retried_and_confirmed() -> None:
    world = World()
    node, locker = loaded_node(world, "a")
    before = world.store.read(locker.store_key)
    assert before is not None
    answers: list[bool] = []
    token = f"{node.session}#x"
    locker.data["tokens"].append(token)
    locker.when_saved(locker.mark_changed(), answers.append)
    locker.force_save()
    node.service.update()
    node.executor.time_out(execute=False)  # never reached the store
    assert world.store.read(locker.store_key) == before
    node.service.update()
    assert answers == []
    for _ in range(20):
        world.true.advance(0.05)
        world.pump(node)
    assert answers == [True]
    assert token in stored_tokens(world.store, WILD)
    saves = [c for c in commits_of(world, "a") if token in tokens_of(decode(c.value))]
    assert len(saves) == 1
    world.assert_ok()


def test_acquire_reply_lost_after_commit_is_resolved_as_ours() -> None:
    world = World()
    # someone else created the record and released it: epoch 1, unlocked
    other, first = loaded_node(world, "b")
    first.release()
    world.pump(other, rounds=2)
    assert first.status is Status.IDLE
    released = world.store.read(SPEC.store_key(WILD))
    assert released is not None
    assert decode(released.value).epoch == 1

    node = world.service("a")
    locker = world.open(node, WILD, "repeat")
    node.service.update()  # lease renewal and (lease not yet available) nothing else
    node.executor.run_all()
    node.service.update()
    assert node.executor.pending == 1  # the acquire
    node.executor.time_out(execute=True)  # it commits; the reply is lost
    taken = world.store.read(SPEC.store_key(WILD))
    assert taken is not None
    assert decode(taken.value).epoch == 2
    node.service.update()
    assert locker.status is Status.LOADING
    for _ in range(20):
        world.true.advance(0.05)
        world.pump(node)
    assert locker.status is Status.LOADED
    assert locker.token == 2
    later = [c for c in world.log.commits if c.revision > taken.revision]
    assert later == []  # the retry found our lock and wrote nothing: one epoch bump
    current = world.store.read(SPEC.store_key(WILD))
    assert current is not None
    assert decode(current.value).epoch == 2
    world.assert_ok()


@pytest.mark.parametrize("execute", [True, False])
def test_crashed_holder_is_taken_over_after_its_lease(execute: bool) -> None:
    """A holder dies with a save in flight; a repeat waiter takes over after one TTL."""
    world = World()
    dead, old = loaded_node(world, "a", CALM)
    token = world.change(dead, old)
    old.force_save()
    dead.service.update()
    dead.executor.drop_next(execute=execute)  # the process dies around this save
    node = world.service("b")
    locker = world.open(node, CALM, "repeat")
    steps = 0
    while locker.status is not Status.LOADED:
        steps += 1
        assert steps < 100, locker
        world.true.advance(0.05)
        world.pump(node)
    assert world.true.now >= SPEC.lease  # never before the dead lease expired
    assert (token in locker.data["tokens"]) is execute
    world.assert_ok()


# --------------------------------------------------------------------------- found races
# Minimal reproductions of what the race machine found: regression tests once fixed;
# strict xfail while still open (the marker must go with the fix).


def held_in_store(world: World, node: Node, locker: Locker) -> bool:
    current = world.store.read(locker.store_key)
    lock = None if current is None else decode(current.value).lock
    return lock is not None and (lock.session, lock.epoch) == (node.session, locker.token)


def test_late_renewal_does_not_make_a_taken_over_lock_available() -> None:
    world = World()
    old = world.service("old")
    stale = world.open(old, CALM, "repeat")
    world.pump(old, rounds=2)  # t=0: old renews its lease and loads calm (epoch 1)
    assert stale.status is Status.LOADED
    world.true.advance(1.0)  # old runs no frame for one TTL (a pause): its lease expires
    new = world.service("new")
    fresh = world.open(new, CALM, "repeat")
    world.pump(new, rounds=2)  # new renews, finds calm held, asks about old's session
    new.executor.run_all()  # the store says: old's session has expired
    old.service.update()  # old wakes up and sends its renewal (and an autosave)
    old.executor.run_next(0)  # the renewal reaches the store: old's session lives again
    new.service.update()
    new.executor.run_all()  # new takes calm over (epoch 2)
    new.service.update()
    old.service.update()  # old gets its renewal's reply
    assert fresh.status is Status.LOADED
    assert fresh.token == 2
    assert held_in_store(world, new, fresh)
    assert stale.status is Status.LOADED
    assert stale.token == 1
    # old must not report itself available: another session holds its record
    assert not stale.is_available(old.clock())


def test_release_after_unknown_acquire_leaves_no_lock() -> None:
    world = World()
    node = world.service("a")
    locker = world.open(node, CALM, "repeat")
    world.pump(node)  # the lease is renewed; the acquire is sent
    assert node.executor.pending == 1
    node.executor.time_out(execute=True)  # the acquire commits; its reply is lost
    locker.release()  # the caller gives up on the load
    for _ in range(5):
        world.true.advance(0.05)
        world.pump(node)
    current = world.store.read(SPEC.store_key(CALM))
    assert current is not None
    assert decode(current.value).lock is None, "the record is locked by a session no locker uses"
    # The locker ends once its acquire can no longer land (it expires one lease after
    # it was sent), not before: until then a late copy could still take the record.
    while locker.status is not Status.IDLE:
        assert world.true.now < SPEC.lease + 0.5, locker
        world.true.advance(0.05)
        world.pump(node)
    assert node.service.lockers() == []


def test_late_save_never_overwrites_a_newer_save() -> None:
    world = World()
    node, locker = loaded_node(world, "a")
    first = world.change(node, locker)
    locker.force_save()
    node.service.update()
    # The client times out on save #1 while the request is still on its way.
    late = node.executor.time_out_late()
    for _ in range(10):  # save #1 is retried and confirmed
        world.true.advance(0.05)
        world.pump(node)
    second = world.change(node, locker)
    locker.force_save()
    world.pump(node, rounds=2)
    assert world.history.answers == {first: True, second: True}
    late()  # the first attempt of save #1 finally reaches the store
    assert stored_tokens(world.store, WILD) == [first, second]
    world.assert_ok()


def test_cancelled_force_load_leaves_no_release_request() -> None:
    world = World()
    holder, held = loaded_node(world, "holder")
    node = world.service("b")
    locker = world.open(node, WILD, "force")
    world.pump(node)  # the lease is renewed; the acquire is sent
    node.executor.run_all()  # the record is held
    node.service.update()  # so the locker sends a release request
    assert locker.status is Status.WAITING
    assert node.executor.pending == 1
    node.executor.time_out(execute=True)  # the request lands; its reply is lost
    locker.release()  # the caller gives up on the load
    for _ in range(5):
        world.true.advance(0.05)
        world.pump(node)
    assert locker.status is Status.IDLE
    world.true.advance(SPEC.autosave_period)
    world.pump(holder, rounds=2)  # the holder autosaves
    assert held.status is Status.LOADED, "the holder released the record for nobody"


def test_takeover_decided_during_a_lapse_cannot_land_after_the_holder_rechecked() -> None:
    world = World()
    old = world.service("old")
    stale = world.open(old, CALM, "repeat")
    new = world.service("new")
    fresh = world.open(new, CALM, "repeat")
    world.pump(old, rounds=2)  # t=0: old loads calm (epoch 1); its session expires at 1
    while world.true.now < SPEC.lease:  # old runs no frame for one TTL; new keeps polling
        world.pump(new)
        world.true.advance(0.125)
    new.executor.run_all()  # the store says: old's session has expired
    new.service.update()  # so new sends its takeover, conditional on old's lock
    assert fresh.status is Status.LOADING
    assert new.executor.pending == 1
    world.pump(old, rounds=2)  # old wakes and renews, reviving its session
    world.true.advance(SPEC.autosave_period)
    world.pump(old, rounds=2)  # old's next save re-checks its lock: still its own
    new.executor.run_all()  # new's takeover lands if that lock is still there
    new.service.update()
    for node, locker in ((old, stale), (new, fresh)):
        if locker.status is Status.LOADED and locker.is_available(node.clock()):
            assert held_in_store(world, node, locker), (
                f"{node.session} reports calm available but does not hold it"
            )


def test_locker_rechecks_soon_after_a_lapse_with_a_save_in_flight() -> None:
    world = World(replace(SPEC, autosave_period=30.0))
    node = world.service("a")
    locker = world.open(node, CALM, "repeat")
    world.pump(node, rounds=2)
    assert locker.status is Status.LOADED
    world.true.advance(0.9)  # a pause: the lease lapses locally (renew deadline 2/3 s)
    world.change(node, locker)
    locker.force_save()
    node.service.update()  # the renewal and the save go out together
    node.executor.run_all()
    node.service.update()  # both come back: a lapse, and a check sent before it
    for _ in range(8):  # two seconds of frames, every call answered
        world.true.advance(0.25)
        world.pump(node)
    assert held_in_store(world, node, locker)
    assert locker.is_available(node.clock()), "still unavailable long after the lapse"


def stored_lock_of(world: World, key: str) -> object:
    current = world.store.read(SPEC.store_key(key))
    return None if current is None else decode(current.value).lock


@pytest.mark.parametrize("lands", ["while-releasing", "after-the-end"])
def test_a_late_acquire_after_the_load_and_release_leaves_no_lock(lands: str) -> None:
    """An acquire delivered late, after the same locker loaded and released the record,
    must not leave the record locked for a session with no locker (an orphan lock)."""
    world = World()
    node = world.service("a")
    locker = world.open(node, CALM, "repeat")
    world.pump(node)  # the lease is renewed; the acquire is sent
    assert node.executor.pending == 1
    late = node.executor.time_out_late()  # the client gives up; the request is on its way
    sent = world.true.now
    for _ in range(10):  # the retry loads the record
        world.true.advance(0.05)
        world.pump(node)
    assert locker.status is Status.LOADED
    locker.release()
    world.pump(node, rounds=2)  # the release write commits
    assert stored_lock_of(world, CALM) is None
    if lands == "while-releasing":
        late()  # the first acquire reaches the store now: it takes the free record
    while locker.status is not Status.IDLE:
        assert world.true.now < sent + SPEC.lease + 0.5, locker
        world.true.advance(0.05)
        world.pump(node)
    if lands == "after-the-end":
        late()  # too late now: it has expired and writes nothing
    assert node.service.lockers() == []
    assert stored_lock_of(world, CALM) is None, "a lock for a session with no locker"
    fresh = world.service("b")
    other = world.open(fresh, CALM, "repeat")
    world.pump(fresh, rounds=3)
    assert other.status is Status.LOADED
    world.assert_ok()


def paused_acquire(world: World) -> tuple[Node, Locker, list[int | None]]:
    """``a`` sends its acquire, which commits (epoch 1); then ``a`` is paused before it
    handles the reply, for longer than its lease."""
    node = world.service("a")
    locker = world.open(node, CALM, "repeat")
    announced: list[int | None] = []
    locker.on("loaded", lambda lk: announced.append(lk.token))
    world.pump(node)  # the lease is renewed; the acquire is sent
    assert node.executor.pending == 1
    node.executor.run_next()  # it commits; the reply waits for a's next frame
    world.true.advance(SPEC.lease + 0.1)  # a is paused: its session expires in the store
    return node, locker, announced


def test_a_late_acquire_reply_never_announces_a_superseded_lock() -> None:
    world = World()
    node, stale, announced = paused_acquire(world)
    taker = world.service("b")
    fresh = world.open(taker, CALM, "repeat")
    for _ in range(6):  # b finds a's session expired and takes the record over (epoch 2)
        world.pump(taker)
        world.true.advance(0.05)
    assert fresh.status is Status.LOADED
    assert fresh.token == 2
    for _ in range(6):  # a wakes up and handles its acquire's reply at last
        world.pump(node)
        world.true.advance(0.05)
        assert not stale.is_available(node.clock())
    assert announced == [], "a announced loaded for an epoch b had taken over"
    assert stale.status is Status.LOST
    assert held_in_store(world, taker, fresh)
    world.assert_ok()


def test_a_late_acquire_reply_still_loads_once_the_lock_is_confirmed() -> None:
    world = World()
    node, locker, announced = paused_acquire(world)
    for _ in range(6):  # no one took the record meanwhile: a confirms, then loads
        world.pump(node)
        world.true.advance(0.05)
    assert announced == [1]
    assert locker.status is Status.LOADED
    assert locker.is_available(node.clock())
    assert held_in_store(world, node, locker)
    world.assert_ok()


def test_a_release_while_confirming_a_late_grant_leaves_no_lock() -> None:
    """Found by the race machine: released while it waited to confirm a grant handled
    after a lapse, a locker ended without clearing the lock that grant had taken."""
    world = World()
    node, locker, announced = paused_acquire(world)
    node.service.update()  # the late grant: to be confirmed once the lease is renewed
    assert locker.status is Status.LOADING
    locker.release()
    for _ in range(6):
        world.pump(node)
        world.true.advance(0.05)
    assert locker.status is Status.IDLE
    assert announced == []
    assert stored_lock_of(world, CALM) is None, "a lock for a session with no locker"
    world.assert_ok()


def test_a_frame_that_began_before_the_pause_does_not_announce_the_late_grant() -> None:
    """Found by the soak: a frame reads its clock, the process is stopped, and after it
    resumes the frame handles the acquire's reply with that old time."""
    world = World()
    before = world.true.now
    node, locker, announced = paused_acquire(world)
    node.service.update(before)  # the frame's "now" predates the pause
    assert announced == []
    assert locker.status is Status.LOADING
    world.assert_ok()


def test_a_confirmation_whose_reply_comes_after_another_lapse_is_confirmed_again() -> None:
    """The late grant's confirmation commits, then ``a`` is paused again past its lease
    and ``b`` takes the record over before ``a`` handles that reply: ``a`` must confirm
    again (and find its lock gone) rather than announce the superseded epoch."""
    world = World()
    node, stale, announced = paused_acquire(world)
    for _ in range(5):  # the late grant, the lease renewed, then the confirmation sent
        node.service.update()
        if stale.request_in_flight == "confirm":
            break
        node.executor.run_all()
    assert stale.request_in_flight == "confirm"
    node.executor.run_all()  # the confirmation commits; its reply waits for a's next frame
    world.true.advance(SPEC.lease + 0.1)  # a is paused again: its session expires
    taker = world.service("b")
    fresh = world.open(taker, CALM, "repeat")
    for _ in range(6):  # b takes the record over (epoch 2)
        world.pump(taker)
        world.true.advance(0.05)
    assert fresh.token == 2
    for _ in range(6):  # a handles its confirmation's reply at last
        world.pump(node)
        world.true.advance(0.05)
        assert not stale.is_available(node.clock())
    assert announced == [], "a announced loaded for an epoch b had taken over"
    assert stale.status is Status.LOST
    assert held_in_store(world, taker, fresh)
    world.assert_ok()
