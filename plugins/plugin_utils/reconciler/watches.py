"""The reconciler's watches: one LIST + WATCH per (node, kind), feeding what they see onward.

Owns the loop of one watch and nothing of what its events mean (that is the ``Listener``'s,
the controller): list, watch from the list's version, resume from the last version seen when
the server ends a stream (bookmarks move it too), list again on 410 Gone, and on any other
failure (401, 403, 404, 5xx, a lost server, an unusable kubeconfig) wait as
``schedule.WatchRetry`` says before trying again, logging only the lines it allows. A watch
thread never dies of an error: its node would go deaf.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import API_VERSION, DOMAINS, SERVICES
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import (
    ApiClient,
    ApiClients,
    ApiError,
    KubeconfigError,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import RetryStep, WatchRetry
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import WatchedNode
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.telemetry import metrics, say

PODS = "pods"
KINDS = (SERVICES, DOMAINS, PODS)


def collection_path(*, kind: str, namespace: str) -> str:
    if kind == PODS:
        return f"/api/v1/namespaces/{namespace}/pods"
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{kind}"


class Listener(Protocol):
    def listed(self, node: str, kind: str, items: list[dict[str, Any]]) -> None:
        """A fresh LIST (events may have been missed before it)."""

    def event(self, node: str, kind: str, event: str, obj: dict[str, Any]) -> None:
        """One ADDED, MODIFIED or DELETED event."""


class Watch:
    """The watch of one kind in one node's namespace."""

    def __init__(self, *, node: WatchedNode, kind: str, clients: ApiClients, listener: Listener,
                 stopping: threading.Event, clock: Callable[[], float] = time.monotonic,
                 retry: WatchRetry | None = None) -> None:
        self.node, self.kind = node, kind
        self.path = collection_path(kind=kind, namespace=node.namespace)
        self._clients, self._listener, self._stopping, self._clock = clients, listener, stopping, clock
        self._retry = retry or WatchRetry()
        # The version to resume from (None: list first); events move it as they are handled,
        # so a stream that breaks after some does not replay them.
        self._version: str | None = None

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                api = self._clients.get(self.node.kubeconfig, self.node.context)
                if self._version is None:
                    listing = api.request("GET", self.path)
                    self._listener.listed(self.node.name, self.kind, listing.get("items") or [])
                    self._version = listing["metadata"]["resourceVersion"]
                step = self._stream(api, self._version)
            except ApiError as error:
                expired = error.status == 410
                if expired:
                    self._version = None
                if error.status == 401:
                    self._clients.forget(self.node.kubeconfig, self.node.context)
                step = self._retry.failed(now=self._clock(), expired=expired)
                self._say(step, "watch expired, listing again" if expired else "watch failed",
                          status=error.status, reason=error.reason, error=error.message[:200])
            except KubeconfigError as error:
                step = self._retry.failed(now=self._clock())
                self._say(step, "watch cannot use the node's kubeconfig", error=str(error)[:300])
            except Exception as error:  # noqa: BLE001 - a watch thread must never die: its node would go deaf
                self._version = None
                step = self._retry.failed(now=self._clock())
                self._say(step, "watch crashed", error=repr(error)[:300], exc_info=step.log)
            if step is not None:
                metrics().watch_restarts.labels(node=self.node.name, kind=self.kind).inc()
                self._stopping.wait(step.delay)

    def _stream(self, api: ApiClient, first: str) -> RetryStep | None:
        """Watch from ``first`` until the server ends the stream; the retry step when it was no
        healthy one."""
        started = self._clock()
        stream = api.watch(self.path, resource_version=first)
        for event in stream:
            if self._stopping.is_set():
                stream.close()
                return None
            self._progress()
            metrics().events.labels(node=self.node.name, kind=self.kind, type=event["type"]).inc()
            self._listener.event(self.node.name, self.kind, event["type"], event["object"])
            self._version = stream.resource_version
        self._version = stream.resource_version  # a final bookmark
        failures = self._retry.failures
        step = self._retry.ended(now=self._clock(), started=started, delivered=self._version != first)
        if step is not None:
            self._say(step, "watch ended at once", seconds=round(self._clock() - started, 2))
        elif failures:
            say(logging.INFO, "watch recovered", node=self.node.name, kind=self.kind, after_failures=failures)
        return step

    def _progress(self) -> None:
        failures = self._retry.recovered()
        if failures:
            say(logging.INFO, "watch recovered", node=self.node.name, kind=self.kind, after_failures=failures)

    def _say(self, step: RetryStep, message: str, *, exc_info: bool = False, **fields: Any) -> None:
        if not step.log:
            return
        level = logging.INFO if step.failures == 1 and step.delay == 0 else logging.WARNING
        say(level, message, node=self.node.name, kind=self.kind, retry_in=step.delay, failures=step.failures,
            not_logged=step.quiet, exc_info=exc_info, **fields)
