"""Pure scheduling of the reconciler: which nodes run when, and with whom.

Owns every timing rule of the daemon and nothing else: no threads, no I/O, no clock of its
own (every method takes ``now``, seconds of a monotonic clock), so tests drive it with a
fake one.

- A change makes its node due after ``debounce``, which gathers a burst of events into one
  run; the earliest due time wins, so a steady stream of events never postpones a run.
- A node is never in two runs at once (two agents on one node would race): a change seen
  while its node is busy is held, and makes the node due (at its own time, so it waits only
  for the rest of that run) when the run has ended.
- A run's own writes are no change: their echoes (a watch event whose object is the version a
  run of that node wrote, ``Write``) start no run of the node. Writes by another node's run,
  by a user or by anything else do, as does every fresh LIST.
- A run takes along its node's companions (the nodes serving the networks of its changed
  dtServices, learnt by ``Servers``; for a hub being deleted, every other node of its
  network, so a failover is served by one run), except those busy in another run; runs with
  companions are started first, and a companion that was due itself is served by them.
- A node whose run says a hub's failover is due later (its pod is gone, the grace runs) is
  due again then, with the other nodes of that hub's networks (``recheck``).
- A failover's run (a leaving hub's, a recheck's) waits for its companions that are busy, at
  most ``HOLD_CAP``: run without them, the hub would go while its clients are not moved.
- A node whose run failed is due again after 1, 2, 4, ... seconds, at most ``max_backoff``;
  one whose dtServices are not done yet (waiting on another node) likewise, at most
  ``NOT_DONE_CAP``.
- Every node is due every ``resync`` seconds, which repairs drift no event announced.
- A dtService event that changes only the tunnel-health annotations a pass writes
  (``Seen``) makes nothing due: it is a pass's record of what it saw, not a change to serve.
- At most ``parallel_runs`` runs at a time.
- A failing watch waits 1, 2, 4, ... seconds, at most ``WATCH_BACKOFF_CAP``, before it lists
  again, and says so in a bounded number of log lines (``WatchRetry``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    HANDSHAKE_ANNOTATION,
    PEERS_ANNOTATION,
    SERVER,
)

# Waiting on another node (its server being set up, a first handshake) is no failure: look
# again soon, a little later each time, but never wait longer than this.
NOT_DONE_CAP = 10.0
WATCH_BACKOFF_FIRST = 1.0
WATCH_BACKOFF_CAP = 30.0
# The longest a failover's run waits for its busy companions before it runs without them.
HOLD_CAP = 30.0
# A watch stream that ends this soon without delivering anything counts as a failure, so a
# server that closes every stream at once is not watched again in a tight loop.
WATCH_HEALTHY_AFTER = 5.0
# While a watch keeps failing at the cap, one log line per this many seconds.
WATCH_REMIND_EVERY = 300.0


def backoff(*, attempt: int, first: float, cap: float) -> float:
    """The wait before retry number ``attempt`` (1, 2, ...): ``first`` doubled each time, at most ``cap``."""
    return min(cap, first * 2 ** min(max(attempt, 1) - 1, 62))


@dataclass(frozen=True)
class Timing:
    """The schedule's settings (the ``dtservice_daemon_*`` role variables of the same names)."""

    debounce: float = 0.05
    resync: float = 60.0
    max_backoff: float = 60.0
    parallel_runs: int = 4


@dataclass(frozen=True)
class Write:
    """One version of one object: what a run's write made, or what a watch event shows."""

    uid: str
    version: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Write | None:
        meta = obj.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        return cls(uid=uid, version=version) if isinstance(uid, str) and isinstance(version, str) else None


@dataclass(frozen=True)
class _Change:
    at: float
    write: Write | None
    companion: str | None
    what: str | None
    companions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    """One reconcile run: its node and the companions taken along (``--limit`` all of them)."""

    node: str
    companions: tuple[str, ...] = ()
    # Why the node was due: "change" (an event or a list), "retry" (its last run failed or
    # was not done) or "resync", and for a change what changed; for the log, not part of the
    # run's identity.
    cause: str = field(default="change", compare=False)
    because: str | None = field(default=None, compare=False)

    @property
    def members(self) -> tuple[str, ...]:
        return (self.node, *self.companions)


@dataclass(frozen=True)
class Outcome:
    """What a run said of one of its nodes: whether it failed, and its dtServices not done yet."""

    failed: bool
    not_done: tuple[str, ...] = ()
    # Seconds until a failover of a network this node serves is due (None: none is).
    recheck_in: float | None = None


@dataclass
class _Node:
    due: float | None = None
    companions: set[str] = field(default_factory=set)
    # Companions the next run waits for while they are busy (a failover's), since ``waiting_since``.
    wait_for: set[str] = field(default_factory=set)
    waiting_since: float | None = None
    busy: bool = False
    failures: int = 0
    waits: int = 0
    cause: str = "change"
    because: str | None = None
    # Changes seen during the node's run, judged when it ends; the writes of its last run.
    held: list[_Change] = field(default_factory=list)
    written: frozenset[Write] = frozenset()


class Schedule:
    """The due times, companions, runs and backoff counters of every node."""

    def __init__(self, nodes: Iterable[str], *, timing: Timing, now: float) -> None:
        self.timing = timing
        self._nodes = {name: _Node() for name in nodes}
        self._runs = 0
        self._next_resync = now + timing.resync

    def changed(self, node: str, *, now: float, companion: str | None = None, companions: Iterable[str] = (),
                write: Write | None = None, what: str | None = None) -> bool:
        """Something of ``node`` changed: an event showing ``write`` (None: a fresh list);
        ``companion`` serves the network of the changed dtService and goes into the node's
        next run; ``companions`` are the other nodes of a network whose hub is leaving: they
        go into it too, and it waits for them; ``what`` names it in the log. False when it is
        the echo of the node's last run, which changes nothing."""
        state = self._nodes[node]
        change = _Change(at=now, write=write, companion=companion, what=what, companions=tuple(companions))
        if state.busy:
            state.held.append(change)
            return True
        if write is not None and write in state.written:
            return False
        self._change(node, change)
        return True

    def _change(self, node: str, change: _Change) -> None:
        self._join(node, [change.companion])
        self._join(node, change.companions, wait=True, now=change.at)
        self._due(node, change.at + self.timing.debounce, because=change.what)

    def recheck(self, node: str, *, now: float, after: float, companions: Iterable[str] = ()) -> None:
        """``node`` is due in ``after`` seconds, with ``companions`` (a failover falls due
        then), which its run waits for."""
        self._join(node, companions, wait=True, now=now + after)
        self._due(node, now + max(after, self.timing.debounce), cause="recheck")

    def _join(self, node: str, companions: Iterable[str | None], *, wait: bool = False, now: float = 0.0) -> None:
        state = self._nodes[node]
        joined = {c for c in companions if c is not None and c != node and c in self._nodes}
        state.companions |= joined
        if wait and joined:
            state.wait_for |= joined
            state.waiting_since = now if state.waiting_since is None else min(state.waiting_since, now)

    def _waiting(self, state: _Node, *, now: float) -> bool:
        """Whether the node's run waits for a busy companion now."""
        return any(self._nodes[c].busy for c in state.wait_for) and state.waiting_since is not None \
            and now < state.waiting_since + HOLD_CAP

    def take(self, *, now: float) -> list[Run]:
        """The runs to start now (their nodes become busy until ``finished``)."""
        if now >= self._next_resync:
            self.resync(now=now)
        # Runs with companions first: a node due at the same time as its companion is then
        # served by the joint run rather than by one of its own beside it.
        ready = sorted((not state.companions, state.due, name) for name, state in self._nodes.items()
                       if state.due is not None and state.due <= now and not state.busy)
        runs = []
        for *_others, name in ready:
            if self._runs >= self.timing.parallel_runs:
                break
            state = self._nodes[name]
            if state.busy or self._waiting(state, now=now):  # taken along by a run of this round, or waiting
                continue
            companions = tuple(sorted(c for c in state.companions if not self._nodes[c].busy))
            cause, because = state.cause, state.because
            state.due, state.companions, state.busy = None, set(), True
            state.wait_for, state.waiting_since = set(), None
            members = {name, *companions}
            for companion in companions:
                other = self._nodes[companion]
                other.busy = True
                # The run reconciles the companion whole: what made it due is served too,
                # unless that needs a node of its own that this run does not take.
                if other.due is not None and other.companions <= members:
                    other.due, other.companions, other.wait_for, other.waiting_since = None, set(), set(), None
            self._runs += 1
            runs.append(Run(node=name, companions=companions, cause=cause, because=because))
        return runs

    def resync(self, *, now: float) -> None:
        """Every node due now (a new leader's first runs: the old one may have died mid-run)."""
        for name in self._nodes:
            self._due(name, now, cause="resync")
        self._next_resync = now + self.timing.resync

    def finished(self, run: Run, *, now: float, outcomes: Mapping[str, Outcome],
                 written: frozenset[Write] = frozenset()) -> dict[str, float]:
        """A run ended, having made ``written``; a member without an outcome counts as failed.
        The changes held during the run that are not its echoes make their nodes due. Returns
        the nodes due again for the outcome and in how many seconds."""
        self._runs -= 1
        retries = {}
        for name in run.members:
            state = self._nodes[name]
            state.busy, state.written = False, written
            held, state.held = state.held, []
            for change in held:
                if change.write is None or change.write not in written:
                    self._change(name, change)
            outcome = outcomes.get(name, Outcome(failed=True))
            if outcome.failed:
                state.failures, state.waits = state.failures + 1, 0
                delay = backoff(attempt=state.failures, first=1.0, cap=self.timing.max_backoff)
            elif outcome.not_done:
                state.failures, state.waits = 0, state.waits + 1
                delay = backoff(attempt=state.waits, first=1.0, cap=min(NOT_DONE_CAP, self.timing.max_backoff))
            else:
                state.failures = state.waits = 0
                continue
            self._due(name, now + delay, cause="retry")
            retries[name] = delay
        return retries

    def wait(self, *, now: float) -> float:
        """Seconds until ``take`` may have something to start (0: now)."""
        candidates = [self._next_resync]
        if self._runs < self.timing.parallel_runs:
            # A run waiting for busy companions is started when they finish (which wakes the
            # loop), or at the cap.
            candidates += [max(s.due, (s.waiting_since or now) + HOLD_CAP) if self._waiting(s, now=now) else s.due
                           for s in self._nodes.values() if s.due is not None and not s.busy]
        return max(0.0, min(candidates) - now)

    def due(self, node: str) -> float | None:
        """When ``node`` is due (None: not due)."""
        return self._nodes[node].due

    def busy(self, node: str) -> bool:
        return self._nodes[node].busy

    @property
    def pending(self) -> int:
        """Nodes waiting for a run (or for theirs to end, with a change that came meanwhile)."""
        return sum(1 for state in self._nodes.values() if state.due is not None or state.held)

    @property
    def running(self) -> int:
        return self._runs

    def _due(self, node: str, at: float, *, cause: str = "change", because: str | None = None) -> None:
        state = self._nodes[node]
        # The log names what the run serves: a resync only when nothing more particular is due
        # (it makes a pending change's run sooner; a change after it names the run).
        if state.due is None or (cause != "resync" and (state.cause == "resync" or at < state.due)):
            state.cause, state.because = cause, because
        if state.due is None or at < state.due:
            state.due = at


class Servers:
    """Which node serves each network, and which nodes hold its dtServices, learnt from the
    dtService events themselves.

    A server's own dtService has no ``spec.server`` and lists itself with the role
    ``server`` in ``peers``; networks are named after their dtServices."""

    def __init__(self) -> None:
        self._by_network: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}
        self._leaving: set[tuple[str, str]] = set()

    def learn(self, node: str, *, event: str, obj: Mapping[str, Any]) -> str | None:
        """Take in one event of a dtService in ``node``'s namespace; return the node serving
        its network when that is another node (to be reconciled in the same run)."""
        name = obj["metadata"]["name"]
        members = self._members.setdefault(name, set())
        if event == "DELETED":
            members.discard(node)
        else:
            members.add(node)
        if event != "DELETED" and _serves(obj):
            self._by_network[name] = node
        elif self._by_network.get(name) == node:
            del self._by_network[name]
        server = self._by_network.get(name)
        return server if server not in (None, node) else None

    def hub_leaving(self, node: str, *, event: str, obj: Mapping[str, Any]) -> tuple[str, ...]:
        """When the event shows a hub's dtService being deleted (or deleted), the other nodes
        of its network: its failover hands the network to one of them and moves the rest, so
        all of them are reconciled in the same run. Once per deletion: the DELETED event that
        ends a deletion already seen under way brings nobody."""
        name = obj["metadata"]["name"]
        if event == "DELETED" and (node, name) in self._leaving:
            self._leaving.discard((node, name))
            return ()
        if not _serves(obj) or not (event == "DELETED" or obj["metadata"].get("deletionTimestamp")):
            return ()
        if event != "DELETED":
            if (node, name) in self._leaving:
                return ()
            self._leaving.add((node, name))
        return tuple(sorted(self._members.get(name, set()) - {node}))

    def networks_of(self, node: str) -> tuple[str, ...]:
        """The other nodes of the networks ``node`` serves."""
        return tuple(sorted({member for name, server in self._by_network.items() if server == node
                             for member in self._members.get(name, set())} - {node}))

    def relisted(self, node: str, objects: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of ``node``'s dtServices: what it no longer serves or holds is
        forgotten (its deletion may have happened while nobody watched)."""
        for name in [n for n, server in self._by_network.items() if server == node]:
            del self._by_network[name]
        for members in self._members.values():
            members.discard(node)
        for obj in objects:
            self.learn(node, event="ADDED", obj=obj)

    def server(self, network: str) -> str | None:
        return self._by_network.get(network)


class Seen:
    """The last version of each dtService the watches delivered, to tell the events that only
    record a pass's view of a tunnel (its health annotations) from the ones to serve."""

    _BOOKKEEPING = ("resourceVersion", "managedFields")
    _HEALTH = (PEERS_ANNOTATION, HANDSHAKE_ANNOTATION)

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], Any] = {}

    @classmethod
    def _meaning(cls, obj: Mapping[str, Any]) -> Any:
        metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in cls._BOOKKEEPING}
        metadata["annotations"] = {k: v for k, v in (metadata.get("annotations") or {}).items()
                                   if k not in cls._HEALTH}
        return {**obj, "metadata": metadata}

    def worth_a_run(self, node: str, *, event: str, obj: Mapping[str, Any]) -> bool:
        """Take in one event; False when it differs from the last one seen of that dtService
        only in the health annotations and bookkeeping (resourceVersion, managedFields)."""
        key = (node, obj["metadata"]["name"])
        meaning = self._meaning(obj)
        before = self._objects.pop(key, None)
        if event != "DELETED":
            self._objects[key] = meaning
        return not (event == "MODIFIED" and before == meaning)

    def relisted(self, node: str, objects: Iterable[Mapping[str, Any]]) -> None:
        for key in [k for k in self._objects if k[0] == node]:
            del self._objects[key]
        for obj in objects:
            self._objects[(node, obj["metadata"]["name"])] = self._meaning(obj)


def _serves(obj: Mapping[str, Any]) -> bool:
    return not (obj.get("spec") or {}).get("server") and any(
        SERVER in (entry.get("labels") or {}).values() for entry in (obj.get("peers") or {}).values()
        if isinstance(entry, Mapping))


@dataclass(frozen=True)
class RetryStep:
    """What a failing watch does next: wait ``delay`` seconds, and whether to say so now
    (``quiet`` retries were not logged since the last line)."""

    delay: float
    log: bool
    failures: int
    quiet: int


@dataclass
class WatchRetry:
    """The backoff of one watch and the rule that keeps its log bounded: a line for the first
    failure and for each longer wait, then, at the cap, one every ``remind_every`` seconds.

    A 410 (the watched version expired) is the normal end of a long watch: the first one is
    listed again at once; 410s in a row back off like any failure."""

    first: float = WATCH_BACKOFF_FIRST
    cap: float = WATCH_BACKOFF_CAP
    healthy_after: float = WATCH_HEALTHY_AFTER
    remind_every: float = WATCH_REMIND_EVERY
    failures: int = 0
    _logged_delay: float = -1.0
    _logged_at: float | None = None
    _quiet: int = 0

    def failed(self, *, now: float, expired: bool = False) -> RetryStep:
        self.failures += 1
        if expired and self.failures == 1:
            delay = 0.0
        else:
            delay = backoff(attempt=self.failures - (1 if expired else 0), first=self.first, cap=self.cap)
        log = (self.failures == 1 or delay > self._logged_delay
               or (self._logged_at is not None and now - self._logged_at >= self.remind_every))
        step = RetryStep(delay=delay, log=log, failures=self.failures, quiet=self._quiet if log else 0)
        if log:
            self._logged_delay, self._logged_at, self._quiet = delay, now, 0
        else:
            self._quiet += 1
        return step

    def ended(self, *, now: float, started: float, delivered: bool) -> RetryStep | None:
        """The server closed a stream without an error: healthy when it delivered something
        or lasted, else a failure like any other (None: healthy, watch on)."""
        if delivered or now - started >= self.healthy_after:
            self.recovered()
            return None
        return self.failed(now=now)

    def recovered(self) -> int:
        """The watch works again; returns the failures before (to log the recovery once)."""
        failures = self.failures
        self.failures, self._logged_delay, self._logged_at, self._quiet = 0, -1.0, None, 0
        return failures
