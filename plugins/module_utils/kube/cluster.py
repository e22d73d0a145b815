"""API access for the provisioner: one connection per federation node's API server.

Owns every call to a Kubernetes API server (reads, optimistic writes, Events). The rest of
the core sees plain dicts. Writes carry the object's ``resourceVersion`` so that two
provisioners racing on the same object get a 409 instead of overwriting each other, and a
write happens only when the object really differs, so a converged federation sees reads only.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    API_VERSION,
    DOMAINS,
    EVENT_SOURCE,
    SERVICE_KIND,
    SERVICES,
    NodeRef,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClient, ApiError, load_endpoint


class Conflict(Exception):
    """Somebody else wrote the object since it was read (HTTP 409): re-read and retry."""


@dataclass
class SharedObject:
    """The newest copy of one object among threads that take turns writing it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: dict | None = None


@dataclass
class Connections:
    """One API client per (kubeconfig, context), made on first use and shared by threads."""

    _clients: dict[tuple, ApiClient] = field(default_factory=dict)
    _shared: dict[tuple, SharedObject] = field(default_factory=dict)
    _shared_guard: threading.Lock = field(default_factory=threading.Lock)

    def shared(self, *key: object) -> SharedObject:
        """One SharedObject per key for the threads sharing these connections."""
        with self._shared_guard:
            return self._shared.setdefault(key, SharedObject())

    def api(self, node: NodeRef) -> ApiClient:
        key = (node.kubeconfig, node.context)
        if key not in self._clients:
            self._clients[key] = ApiClient(load_endpoint(kubeconfig=node.kubeconfig, context=node.context))
        return self._clients[key]


def _custom(node: NodeRef, plural: str, name: str | None = None, *, status: bool = False) -> str:
    path = f"/apis/{API_VERSION}/namespaces/{node.namespace}/{plural}"
    return path + (f"/{name}" if name else "") + ("/status" if status else "")


def _core(node: NodeRef, kind: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{node.namespace}/{kind}" + (f"/{name}" if name else "")


class Cluster:
    """The provisioner's view of the federation's API servers."""

    def shared_service(self, node: NodeRef, name: str) -> SharedObject:
        """A dtService that many nodes' threads write (a server's ``peers`` table): holding its
        lock around a read-modify-write, starting from the newest copy any of them has, they
        take turns instead of failing each other's writes with conflicts."""
        return self.connections.shared(node.kubeconfig, node.context, node.namespace, "dtservices", name)

    def __init__(self, *, connections: Connections | None = None, dry_run: bool = False) -> None:
        self.connections = connections or Connections()
        # Check mode: every write is sent with dryRun=All, so the API server validates it
        # and nothing is stored.
        self.dry_run = dry_run
        self.writes = 0

    def _get(self, node: NodeRef, path: str, **query: str) -> dict:
        return self.connections.api(node).request("GET", path, query=query or None)

    def _get_or_none(self, node: NodeRef, path: str) -> dict | None:
        try:
            return self._get(node, path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    # -- reads ----------------------------------------------------------------------------
    def list_services(self, node: NodeRef) -> list[dict]:
        return self._get(node, _custom(node, SERVICES))["items"]

    def get_service(self, node: NodeRef, name: str) -> dict | None:
        return self._get_or_none(node, _custom(node, SERVICES, name))

    def list_domains(self, node: NodeRef) -> list[dict]:
        return self._get(node, _custom(node, DOMAINS))["items"]

    def get_domain(self, node: NodeRef, name: str) -> dict | None:
        return self._get_or_none(node, _custom(node, DOMAINS, name))

    def list_pods(self, node: NodeRef) -> dict[str, dict]:
        return {pod["metadata"]["name"]: pod for pod in self._get(node, _core(node, "pods"))["items"]}

    def list_secrets(self, node: NodeRef, *, label_selector: str) -> dict[str, dict]:
        secrets = self._get(node, _core(node, "secrets"), labelSelector=label_selector)["items"]
        return {secret["metadata"]["name"]: secret for secret in secrets}

    # -- writes ---------------------------------------------------------------------------
    def _write(self, node: NodeRef, method: str, path: str, body: Any = None, *,
               content_type: str = "application/json", missing_ok: bool = False) -> dict:
        query = {"dryRun": "All"} if self.dry_run else None
        try:
            result = self.connections.api(node).request(method, path, body=body, query=query,
                                                        content_type=content_type)
        except ApiError as error:
            if error.status == 409:
                raise Conflict(error.reason) from None
            if missing_ok and error.status == 404:
                return {}
            raise
        self.writes += 1
        return result

    def replace_service(self, node: NodeRef, body: dict) -> dict:
        """PUT with the body's resourceVersion: a Conflict when the object moved on."""
        return self._write(node, "PUT", _custom(node, SERVICES, body["metadata"]["name"]), body)

    def delete_service(self, node: NodeRef, name: str) -> None:
        self._write(node, "DELETE", _custom(node, SERVICES, name), missing_ok=True)

    def replace_service_status(self, node: NodeRef, body: dict) -> dict:
        return self._write(node, "PUT", _custom(node, SERVICES, body["metadata"]["name"], status=True), body)

    def replace_domain_status(self, node: NodeRef, body: dict) -> dict:
        return self._write(node, "PUT", _custom(node, DOMAINS, body["metadata"]["name"], status=True), body)

    def create_secret(self, node: NodeRef, body: dict) -> dict:
        return self._write(node, "POST", _core(node, "secrets"), body)

    def replace_secret(self, node: NodeRef, body: dict) -> dict:
        """PUT with the body's resourceVersion: a Conflict when the Secret moved on."""
        return self._write(node, "PUT", _core(node, "secrets", body["metadata"]["name"]), body)

    def annotate_service(self, node: NodeRef, name: str, annotations: dict[str, str | None]) -> dict:
        """Merge the annotations (None removes one) into a dtService's metadata."""
        return self._write(node, "PATCH", _custom(node, SERVICES, name), {"metadata": {"annotations": annotations}},
                           content_type="application/merge-patch+json")

    def delete_secret(self, node: NodeRef, name: str) -> None:
        self._write(node, "DELETE", _core(node, "secrets", name), missing_ok=True)

    def patch_pod_labels(self, node: NodeRef, pod: str, labels: dict[str, str | None]) -> None:
        self._write(node, "PATCH", _core(node, "pods", pod), {"metadata": {"labels": labels}},
                    content_type="application/merge-patch+json")

    def record_event(self, node: NodeRef, *, service: dict, reason: str, message: str,
                     warning: bool) -> None:
        """A core/v1 Event on the dtService, as `kubectl describe` lists them."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = service["metadata"]
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": node.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": SERVICE_KIND, "name": meta["name"],
                               "namespace": node.namespace, "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
            "source": {"component": EVENT_SOURCE}, "reportingComponent": EVENT_SOURCE,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._write(node, "POST", _core(node, "events"), body)
