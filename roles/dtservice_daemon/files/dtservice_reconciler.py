#!/usr/bin/env python3
"""The reconciler daemon: watches the federation and runs playbooks/reconcile.yml for what changed.

Owns when reconciles happen, not what they do (that is the playbook and its modules):
- one watch per (node namespace, kind) for dtServices, dtDomains and Pods, on every member
  cluster, with the kubernetes client's Watch; a watch that ends, errs or whose
  resourceVersion expired (410) starts again from a fresh list, so the daemon survives API
  server restarts;
- a change marks its node dirty; after a short debounce the node's reconcile runs through
  ansible-runner (`--limit node`), one run at a time per node; a change of a dtService whose
  network another node serves brings that server's node into the same run, where the
  joiner's claim reaches the server's interface before the joiner waits for its handshake
  (the servers are learnt from the dtService events themselves);
- the dtservice_status callback's summary says which nodes failed or are not Connected yet:
  those are requeued with exponential backoff; every node is resynced periodically, which
  repairs drift (a hand-edited `peers`, an interface deleted in a pod);
- structured JSON logs (which node, which run, what changed) and Prometheus metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from urllib3.exceptions import HTTPError

RECONCILES = Counter("dtservice_reconcile_total", "Reconcile runs by node and result", ["node", "result"])
DURATION = Histogram("dtservice_reconcile_duration_seconds", "Wall time of one reconcile run", ["node"],
                     buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60))
WATCH_RESTARTS = Counter("dtservice_watch_restarts_total", "Watches started again", ["node", "kind"])
EVENTS = Counter("dtservice_watch_events_total", "Watch events seen", ["node", "kind", "type"])
PENDING = Gauge("dtservice_nodes_pending", "Nodes waiting for a reconcile")

KINDS = ("dtservices", "dtdomains", "pods")
NOT_DONE = {"Pending", "ServerUnreachable", "Failed"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, sort_keys=True)


log = logging.getLogger("dtservice-reconciler")


def say(level: int, message: str, **fields) -> None:
    log.log(level, message, extra={"fields": fields})


@dataclass
class NodeState:
    """Scheduling state of one node: when it should run next and how often it failed."""

    due: float | None = None
    companions: set[str] = field(default_factory=set)
    failures: int = 0
    waiting: int = 0
    running: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Reconciler:
    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.nodes = {node["name"]: node for node in settings["nodes"]}
        self.state = {name: NodeState() for name in self.nodes}
        self.wake = threading.Condition()
        self.stopping = threading.Event()
        self.workers = threading.BoundedSemaphore(settings.get("parallel_runs", 4))
        self.servers: dict[str, str] = {}

    # -- scheduling -----------------------------------------------------------------------
    def mark(self, node: str, *, delay: float, companion: str | None = None) -> None:
        with self.wake:
            state = self.state[node]
            if companion is not None and companion in self.state:
                state.companions.add(companion)
            due = time.monotonic() + delay
            if state.due is None or due < state.due:
                state.due = due
            PENDING.set(sum(1 for s in self.state.values() if s.due is not None))
            self.wake.notify()

    def scheduler(self) -> None:
        resync = self.settings.get("resync_seconds", 60)
        next_resync = time.monotonic() + resync
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_resync:
                for name in self.nodes:
                    self.mark(name, delay=0)
                next_resync = now + resync
            with self.wake:
                ready = [n for n, s in self.state.items() if s.due is not None and s.due <= now and not s.running]
                runs = {}
                for name in ready:
                    state = self.state[name]
                    if state.running:
                        continue  # taken into another run of this round: its own comes after
                    state.due, state.running = None, True
                    # A node is never in two runs at once: two agents on one node would race.
                    runs[name] = sorted(c for c in state.companions - {name} if not self.state[c].running)
                    for companion in runs[name]:
                        self.state[companion].running = True
                    state.companions = set()
                ready = list(runs)
                PENDING.set(sum(1 for s in self.state.values() if s.due is not None))
                if not ready:
                    upcoming = [s.due for s in self.state.values() if s.due is not None and not s.running]
                    self.wake.wait(timeout=max(0.05, min([next_resync, *upcoming]) - now))
                    continue
            for name in ready:
                threading.Thread(target=self.run_node, args=(name, runs[name]), daemon=True).start()

    # -- runs -----------------------------------------------------------------------------
    def run_node(self, name: str, companions: list[str]) -> None:
        state = self.state[name]
        run_id = uuid.uuid4().hex[:12]
        try:
            with self.workers:
                summary, ok, seconds = self.run_playbook(name, run_id, companions)
        finally:
            with self.wake:
                state.running = False
                for companion in companions:
                    self.state[companion].running = False
                self.wake.notify()
        node = summary.get(name, {})
        not_done = sorted(s for s, status in node.get("services", {}).items() if status in NOT_DONE)
        failed = not ok or node.get("failed", False)
        RECONCILES.labels(node=name, result="failed" if failed else "ok").inc()
        DURATION.labels(node=name).observe(seconds)
        say(logging.WARNING if failed else logging.INFO, "reconciled", node=name, run=run_id, with_nodes=companions,
            seconds=round(seconds, 2), changed=node.get("changed", False), failed=failed,
            services=node.get("services", {}), errors=node.get("errors", []))
        if failed:
            state.failures += 1
            backoff = min(self.settings.get("max_backoff_seconds", 60), 2 ** (state.failures - 1))
        else:
            state.failures = 0
            # Waiting on another node (its server being set up, a first handshake) is no
            # failure: look again soon, a little later each time, never more than 10 s.
            state.waiting = state.waiting + 1 if not_done else 0
            backoff = min(10, state.waiting)
        if failed or not_done:
            say(logging.INFO, "requeued", node=name, run=run_id, in_seconds=backoff, waiting_on=not_done)
            self.mark(name, delay=backoff)

    def run_playbook(self, name: str, run_id: str, companions: list[str]) -> tuple[dict, bool, float]:
        work = Path(self.settings["work_dir"]) / "runs" / name
        work.mkdir(parents=True, exist_ok=True)
        results = work / "results.json"
        results.unlink(missing_ok=True)
        started = time.monotonic()
        runner = ansible_runner.run(
            private_data_dir=str(work), project_dir=self.settings["project_dir"],
            playbook=str(Path(self.settings["project_dir"]) / "playbooks" / "reconcile.yml"),
            inventory=self.settings["inventory"], limit=",".join([name, *companions]), quiet=True, ident=run_id,
            rotate_artifacts=2,
            # The status callback is enabled by its collection name in ansible.cfg, so
            # ansible-runner's own ANSIBLE_CALLBACK_PLUGINS does not hide it.
            envvars={"ANSIBLE_CONFIG": str(Path(self.settings["project_dir"]) / "ansible.cfg"),
                     "DTSERVICE_RESULTS_FILE": str(results), **self.settings.get("env", {})},
        )
        seconds = time.monotonic() - started
        summary = json.loads(results.read_text()) if results.exists() else {}
        return summary, runner.rc == 0, seconds

    # -- watches --------------------------------------------------------------------------
    def watch(self, name: str, kind: str) -> None:
        node = self.nodes[name]
        api_client = config.new_client_from_config(config_file=node.get("kubeconfig"), context=node.get("context"))
        if kind == "pods":
            lister = client.CoreV1Api(api_client).list_namespaced_pod
            args: tuple = (node["namespace"],)
        else:
            lister = client.CustomObjectsApi(api_client).list_namespaced_custom_object
            args = ("sid.sightlineinnovation.com", "v1", node["namespace"], kind)
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                listing = json.loads(lister(*args, _preload_content=False).data)
                version = listing["metadata"]["resourceVersion"]
                if kind == "dtservices":
                    for item in listing["items"]:
                        self.learn_server(name, {"type": "ADDED", "object": item})
                self.mark(name, delay=self.settings.get("debounce_seconds", 0.2))
                stream = watch.Watch()
                for event in stream.stream(lister, *args, resource_version=version, timeout_seconds=300,
                                           allow_watch_bookmarks=True):
                    backoff = 1.0
                    if self.stopping.is_set():
                        stream.stop()
                        break
                    if event["type"] == "BOOKMARK":
                        continue
                    EVENTS.labels(node=name, kind=kind, type=event["type"]).inc()
                    companion = self.learn_server(name, event) if kind == "dtservices" else None
                    self.mark(name, delay=self.settings.get("debounce_seconds", 0.2), companion=companion)
            except ApiException as error:
                say(logging.WARNING if error.status != 410 else logging.INFO, "watch restarting", node=name,
                    kind=kind, status=error.status, reason=str(error.reason))
            except (HTTPError, OSError, ValueError) as error:
                say(logging.WARNING, "watch lost its API server", node=name, kind=kind, error=str(error)[:200],
                    retry_in=backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30)
            except Exception as error:  # noqa: BLE001 - a watch thread must never die: its node would go deaf
                say(logging.ERROR, "watch failed", node=name, kind=kind, error=repr(error)[:300], retry_in=backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30)
            WATCH_RESTARTS.labels(node=name, kind=kind).inc()

    def learn_server(self, node: str, event: dict) -> str | None:
        """Remember which node serves the network of this dtService (a server's own object has
        no spec.server and lists itself as the server); return the server's node when it is
        another one, to be reconciled in the same run."""
        obj = event["object"]
        if event["type"] not in ("ADDED", "MODIFIED", "DELETED") or not isinstance(obj, dict):
            return None
        name = obj["metadata"]["name"]
        serves = not (obj.get("spec") or {}).get("server") and any(
            "server" in (entry.get("labels") or {}).values() for entry in (obj.get("peers") or {}).values())
        if serves and event["type"] != "DELETED":
            self.servers[name] = node
        elif self.servers.get(name) == node:
            del self.servers[name]
        server = self.servers.get(name)
        return server if server not in (None, node) else None

    def serve(self) -> None:
        port = self.settings.get("metrics_port")
        if port:
            start_http_server(port, addr=self.settings.get("metrics_address", "127.0.0.1"))
        for name in self.nodes:
            for kind in KINDS:
                threading.Thread(target=self.watch, args=(name, kind), daemon=True, name=f"watch-{name}-{kind}").start()
        say(logging.INFO, "started", nodes=sorted(self.nodes), metrics_port=port, pid=os.getpid())
        self.scheduler()
        say(logging.INFO, "stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="JSON settings written by the dtservice_daemon role")
    args = parser.parse_args(argv)
    settings = json.loads(Path(args.config).read_text())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    reconciler = Reconciler(settings)

    def stop(signum, _frame) -> None:
        say(logging.INFO, "stopping", signal=signum)
        reconciler.stopping.set()
        with reconciler.wake:
            reconciler.wake.notify()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reconciler.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
