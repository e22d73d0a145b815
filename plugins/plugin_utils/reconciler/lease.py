"""The reconcilers' Lease: reading and writing it every ``retry_period``, for ``election``.

Owns the I/O of the leader election: one thread that reads the ``coordination.k8s.io/v1``
Lease named in the settings, asks the pure ``Election`` (under the controller's lock) what
to do, and creates, takes or renews it with an optimistic write (a 409 means another
reconciler wrote first: read again next time); and the release of a reconciler that stops
while it leads, so that another takes over at once. A failure is logged in bounded lines
and changes nothing: the leadership runs out on its own clock.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import (
    ApiClients,
    ApiError,
    KubeconfigError,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.election import (
    CREATE,
    TAKE,
    WAIT,
    Election,
    Held,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import WatchRetry
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import LeaseSettings
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.telemetry import say


def _micro_time() -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC): what the Lease's times hold."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Keeps ``election`` in line with the Lease; ``lock`` is the controller's condition,
    notified whenever the leadership may have changed."""

    def __init__(self, *, lease: LeaseSettings, election: Election, lock: threading.Condition, clients: ApiClients,
                 stopping: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease, self.election, self._lock = lease, election, lock
        self._clients, self._stopping, self._clock = clients, stopping, clock
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{lease.node.namespace}/leases"
        self._retry = WatchRetry(first=lease.timing.retry_period, cap=lease.timing.retry_period)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
                failures = self._retry.recovered()
                if failures:
                    say(logging.INFO, "lease reachable again", lease=self.lease.name, after_failures=failures)
            except (ApiError, KubeconfigError) as error:
                if isinstance(error, ApiError) and error.status == 401:
                    self._clients.forget(self.lease.node.kubeconfig, self.lease.node.context)
                retry = self._retry.failed(now=self._clock())
                if retry.log:
                    say(logging.WARNING, "lease not renewed", lease=self.lease.name, error=str(error)[:300],
                        failures=retry.failures, not_logged=retry.quiet)
            except Exception as error:  # noqa: BLE001 - the elector must not die: the daemon would never lead
                retry = self._retry.failed(now=self._clock())
                if retry.log:
                    say(logging.ERROR, "lease step crashed", lease=self.lease.name, error=repr(error)[:300],
                        exc_info=True)
            self._stopping.wait(self.lease.timing.retry_period)

    def step(self) -> str:
        """One read and, when the election says so, one write; returns what it did."""
        api = self._clients.get(self.lease.node.kubeconfig, self.lease.node.context)
        try:
            current: dict[str, Any] | None = api.request("GET", f"{self.path}/{self.lease.name}")
        except ApiError as error:
            if error.status != 404:
                raise
            current = None
        with self._lock:
            action = self.election.observe(Held.of(current) if current is not None else None, now=self._clock())
            self._lock.notify_all()
        if action == WAIT:
            return action
        sent = self._clock()
        try:
            self._write(api, action, current)
        except ApiError as error:
            if error.status == 409:  # another reconciler wrote first
                return WAIT
            raise
        with self._lock:
            self.election.written(sent=sent)
            self._lock.notify_all()
        return action

    def _write(self, api: Any, action: str, current: dict[str, Any] | None) -> None:
        now = _micro_time()
        spec = {"holderIdentity": self.election.identity,
                "leaseDurationSeconds": int(self.lease.timing.duration), "renewTime": now}
        if action == CREATE:
            api.request("POST", self.path, body={
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.lease.name},
                "spec": {**spec, "acquireTime": now, "leaseTransitions": 0}})
            return
        old = (current or {}).get("spec") or {}
        if action == TAKE:
            spec.update(acquireTime=now, leaseTransitions=int(old.get("leaseTransitions") or 0) + 1)
            say(logging.INFO, "taking the lease", lease=self.lease.name, identity=self.election.identity,
                from_holder=old.get("holderIdentity") or None)
        api.request("PUT", f"{self.path}/{self.lease.name}", body={**(current or {}), "spec": {**old, **spec}})

    def release(self) -> None:
        """Give the Lease up (this reconciler stops): another takes it on its next read."""
        with self._lock:
            if not self.election.leading(now=self._clock()):
                return
            self.election.released()
        try:
            api = self._clients.get(self.lease.node.kubeconfig, self.lease.node.context)
            current = api.request("GET", f"{self.path}/{self.lease.name}")
            if (current.get("spec") or {}).get("holderIdentity") != self.election.identity:
                return
            api.request("PUT", f"{self.path}/{self.lease.name}", body={
                **current, "spec": {**current["spec"], "holderIdentity": None, "leaseDurationSeconds": 1,
                                    "renewTime": _micro_time()}})
            say(logging.INFO, "lease released", lease=self.lease.name)
        except (ApiError, KubeconfigError) as error:
            say(logging.WARNING, "lease not released; it runs out", lease=self.lease.name, error=str(error)[:300])
