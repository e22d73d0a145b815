"""The reconciler's threads around the pure schedule.

Owns the concurrency of the daemon: one condition guarding the ``Schedule`` and the
``Servers`` table, fed by the watch threads (``listed``/``event``); the loop that starts the
runs the schedule says are due, each in a worker thread, and otherwise sleeps until the next
due time or a change; and the workers, which run, log and count a run and hand its outcome
back to the schedule. A worker whose run raises is logged with its traceback and its nodes
are requeued as failed: no thread dies silently, no node is forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import SERVICES
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.runner import RunResult, run_reconcile
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import (
    Outcome,
    Run,
    Schedule,
    Servers,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import Settings
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.telemetry import metrics, say
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.watches import KINDS, Clients, Watch

RunFunction = Callable[..., RunResult]


class Controller:
    def __init__(self, settings: Settings, *, run: RunFunction = run_reconcile,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self._run = run
        self._clock = clock
        self._wake = threading.Condition()
        self.schedule = Schedule([node.name for node in settings.nodes], timing=settings.timing, now=clock())
        self.servers = Servers()

    # -- what the watches see ------------------------------------------------------------
    def listed(self, node: str, kind: str, items: list[dict[str, Any]]) -> None:
        with self._wake:
            if kind == SERVICES:
                self.servers.relisted(node, items)
            self.schedule.changed(node, now=self._clock())
            self._wake.notify()

    def event(self, node: str, kind: str, event: str, obj: dict[str, Any]) -> None:
        with self._wake:
            companion = self.servers.learn(node, event=event, obj=obj) if kind == SERVICES else None
            self.schedule.changed(node, now=self._clock(), companion=companion)
            self._wake.notify()

    def start_watches(self, clients: Clients | None = None) -> None:
        clients = clients or Clients()
        for node in self.settings.nodes:
            for kind in KINDS:
                watch = Watch(node=node, kind=kind, clients=clients, listener=self, stopping=self.stopping)
                threading.Thread(target=watch.run, daemon=True, name=f"watch-{node.name}-{kind}").start()

    # -- runs ------------------------------------------------------------------------------
    def loop(self) -> None:
        """Start due runs until ``stop``."""
        while not self.stopping.is_set():
            with self._wake:
                runs = self.schedule.take(now=self._clock())
                self._gauges()
                if not runs:
                    self._wake.wait(timeout=self.schedule.wait(now=self._clock()))
                    continue
            for run in runs:
                threading.Thread(target=self._work, args=(run,), daemon=True, name=f"run-{run.node}").start()

    def stop(self) -> None:
        """Safe from a signal handler interrupting the loop: the condition's lock is reentrant."""
        self.stopping.set()
        with self._wake:
            self._wake.notify_all()

    def _work(self, run: Run) -> None:
        run_id = uuid.uuid4().hex[:12]
        outcomes = {name: Outcome(failed=True) for name in run.members}
        try:
            result = self._run(settings=self.settings, run=run, run_id=run_id)
            outcomes = result.outcomes(run)
            self._report(run, run_id, result, outcomes)
        except Exception as error:  # noqa: BLE001 - logged, and the nodes requeued below
            metrics().reconciles.labels(node=run.node, result="crashed").inc()
            say(logging.ERROR, "run crashed", node=run.node, run=run_id, with_nodes=list(run.companions),
                error=repr(error)[:300], exc_info=True)
        finally:
            with self._wake:
                retries = self.schedule.finished(run, now=self._clock(), outcomes=outcomes)
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
            rotated = (result.summary.get(name) or {}).get("rotated") or []
            if rotated:
                metrics().key_rotations.labels(node=name).inc(len(rotated))
                say(logging.INFO, "keys rotated", node=name, run=run_id, services=rotated)
        say(logging.WARNING if failed else logging.INFO, "reconciled", node=run.node, run=run_id,
            with_nodes=list(run.companions), seconds=round(result.seconds, 2), changed=node.get("changed", False),
            failed=failed, timed_out=result.timed_out, services=node.get("services", {}),
            errors=node.get("errors", []),
            companions_failed=sorted(c for c in run.companions if outcomes[c].failed))

    def _gauges(self) -> None:
        metrics().pending.set(self.schedule.pending)
        metrics().running.set(self.schedule.running)
