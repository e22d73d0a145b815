"""The reconciler's threads around the pure schedule.

Owns the concurrency of the daemon: one condition guarding the ``Schedule`` and the
``Servers`` table, fed by the watch threads (``listed``/``event``); the loop that starts the
runs the schedule says are due, each in a worker thread, and otherwise sleeps until the next
due time or a change; and the workers, which run, log and count a run and hand its outcome
back to the schedule. A worker whose run raises is logged with its traceback and its nodes
are requeued as failed: no thread dies silently, no node is forgotten.

With a Lease in the settings, runs start only while the ``Election`` says this reconciler
leads (checked under the same lock, at the moment a run is taken); a follower watches and
keeps its schedule, and on becoming the leader runs every node once (the old leader may
have died mid-run); a leader whose leadership runs out kills its runs in progress, which a
new leader may start again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import SERVICES
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClients
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.election import Election
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.lease import Elector
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.runner import (
    RunResult,
    kill_run,
    run_reconcile,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import (
    Outcome,
    Run,
    Schedule,
    Seen,
    Servers,
    Write,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import Settings
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.telemetry import metrics, say
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.watches import KINDS, Watch

RunFunction = Callable[..., RunResult]
# While following, how often the loop looks at the election besides being woken by the elector.
FOLLOWER_NAP = 1.0


class Controller:
    def __init__(self, settings: Settings, *, run: RunFunction = run_reconcile,
                 clock: Callable[[], float] = time.monotonic, kill: Callable[[str], None] = kill_run,
                 identity: str | None = None) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self._run, self._kill = run, kill
        self._clock = clock
        self._wake = threading.Condition()
        self.schedule = Schedule([node.name for node in settings.nodes], timing=settings.timing, now=clock())
        self.servers = Servers()
        self.seen = Seen()
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.election = Election(self.identity, timing=settings.lease.timing) if settings.lease else None
        self.elector: Elector | None = None
        self._leading = self.election is None
        self._running: dict[str, Run] = {}  # run id -> run, of the runs in progress

    # -- what the watches see ------------------------------------------------------------
    def listed(self, node: str, kind: str, items: list[dict[str, Any]]) -> None:
        with self._wake:
            if kind == SERVICES:
                self.servers.relisted(node, items)
                self.seen.relisted(node, items)
            self.schedule.changed(node, now=self._clock(), what=f"{kind} listed")
            self._wake.notify()

    def event(self, node: str, kind: str, event: str, obj: dict[str, Any]) -> None:
        with self._wake:
            if kind == SERVICES and not self.seen.worth_a_run(node, event=event, obj=obj):
                return
            companion: str | None = None
            companions: tuple[str, ...] = ()
            if kind == SERVICES:
                companion = self.servers.learn(node, event=event, obj=obj)
                companions = self.servers.hub_leaving(node, event=event, obj=obj)
            meta = obj.get("metadata") or {}
            what = f"{kind}/{meta.get('name')}@{meta.get('resourceVersion')} {event}"
            if self.schedule.changed(node, now=self._clock(), companion=companion, companions=companions,
                                     write=Write.of(obj), what=what):
                self._wake.notify()
            else:
                metrics().echoes.labels(node=node, kind=kind).inc()

    def start_watches(self, clients: ApiClients | None = None) -> None:
        clients = clients or ApiClients()
        if self.settings.lease and self.election:
            self.elector = Elector(lease=self.settings.lease, election=self.election, lock=self._wake,
                                   clients=clients, stopping=self.stopping, clock=self._clock)
            threading.Thread(target=self.elector.run, daemon=True, name="lease").start()
        for node in self.settings.nodes:
            for kind in KINDS:
                watch = Watch(node=node, kind=kind, clients=clients, listener=self, stopping=self.stopping)
                threading.Thread(target=watch.run, daemon=True, name=f"watch-{node.name}-{kind}").start()

    # -- runs ------------------------------------------------------------------------------
    def loop(self) -> None:
        """Start due runs until ``stop``."""
        metrics().leader.set(1 if self._leading else 0)
        while not self.stopping.is_set():
            with self._wake:
                now = self._clock()
                leading = self._lead(now)
                runs = self.schedule.take(now=now) if leading else []
                started = [(uuid.uuid4().hex[:12], run) for run in runs]
                self._running.update(started)
                self._gauges()
                if not runs:
                    self._wake.wait(timeout=self._nap(now, leading))
                    continue
            for run_id, run in started:
                threading.Thread(target=self._work, args=(run, run_id), daemon=True, name=f"run-{run.node}").start()

    def _lead(self, now: float) -> bool:
        """Whether runs may start now; says so, and acts, when that changed (under the lock)."""
        leading = self.election is None or self.election.leading(now=now)
        if leading != self._leading:
            self._leading = leading
            metrics().leader.set(1 if leading else 0)
            if self.election is not None:
                say(logging.INFO if leading else logging.WARNING, "leading" if leading else "not leading",
                    identity=self.identity, runs_stopped=[] if leading else sorted(self._running))
            if leading:
                self.schedule.resync(now=now)
            else:
                for run_id in self._running:
                    self._kill(run_id)
        return leading

    def _nap(self, now: float, leading: bool) -> float:
        if not leading:
            return FOLLOWER_NAP
        wait = self.schedule.wait(now=now)
        until = self.election.until() if self.election is not None else None
        return min(wait, max(0.0, until - now)) if until is not None else wait

    def stop(self) -> None:
        """Safe from a signal handler interrupting the loop: the condition's lock is reentrant."""
        self.stopping.set()
        with self._wake:
            self._wake.notify_all()

    def _work(self, run: Run, run_id: str) -> None:
        outcomes = {name: Outcome(failed=True) for name in run.members}
        written: frozenset[Write] = frozenset()
        try:
            result = self._run(settings=self.settings, run=run, run_id=run_id)
            outcomes, written = result.outcomes(run), result.written
            self._report(run, run_id, result, outcomes)
        except Exception as error:  # noqa: BLE001 - logged, and the nodes requeued below
            metrics().reconciles.labels(node=run.node, result="crashed").inc()
            say(logging.ERROR, "run crashed", node=run.node, run=run_id, with_nodes=list(run.companions),
                error=repr(error)[:300], exc_info=True)
        finally:
            with self._wake:
                self._running.pop(run_id, None)
                retries = self.schedule.finished(run, now=self._clock(), outcomes=outcomes, written=written)
                for name, outcome in outcomes.items():
                    if outcome.recheck_in is not None:
                        self.schedule.recheck(name, now=self._clock(), after=outcome.recheck_in,
                                              companions=self.servers.networks_of(name))
                self._gauges()
                self._wake.notify()
        for name, delay in retries.items():
            say(logging.INFO, "requeued", node=name, run=run_id, in_seconds=delay, failed=outcomes[name].failed,
                waiting_on=list(outcomes[name].not_done))

    @staticmethod
    def _report(run: Run, run_id: str, result: RunResult, outcomes: dict[str, Outcome]) -> None:
        node = result.summary.get(run.node) or {}
        failed = outcomes[run.node].failed
        metrics().reconciles.labels(node=run.node, result="failed" if failed else "ok").inc()
        metrics().duration.labels(node=run.node).observe(result.seconds)
        for name in run.members:
            done = result.summary.get(name) or {}
            # A node whose pass failed as a whole read no interface: its last figures stay.
            if not outcomes[name].failed or done.get("tunnels"):
                metrics().tunnels.passed(name, done.get("tunnels") or {})
            rotated = done.get("rotated") or []
            if rotated:
                metrics().key_rotations.labels(node=name).inc(len(rotated))
                say(logging.INFO, "keys rotated", node=name, run=run_id, services=rotated)
        say(logging.WARNING if failed else logging.INFO, "reconciled", node=run.node, run=run_id,
            with_nodes=list(run.companions), cause=run.cause, because=run.because, writes=len(result.written),
            seconds=round(result.seconds, 2), changed=node.get("changed", False),
            failed=failed, timed_out=result.timed_out, services=node.get("services", {}),
            errors=node.get("errors", []),
            companions_failed=sorted(c for c in run.companions if outcomes[c].failed))

    def _gauges(self) -> None:
        metrics().pending.set(self.schedule.pending)
        metrics().running.set(self.schedule.running)
