"""API access for the provisioner: one kubernetes-client connection per federation node.

Owns every call to a Kubernetes API server (reads, optimistic writes, Events). The rest of
the core sees plain dicts. Writes carry the object's ``resourceVersion`` so that two
provisioners racing on the same object get a 409 instead of overwriting each other, and a
write happens only when the object really differs, so a converged federation sees reads only.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP = "sid.sightlineinnovation.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
SERVICES = "dtservices"
DOMAINS = "dtdomains"
FIELD_MANAGER = "dtservice-provisioner"
EVENT_SOURCE = "dtservice-provisioner"


class Conflict(Exception):
    """Somebody else wrote the object since it was read (HTTP 409): re-read and retry."""


@dataclass(frozen=True)
class NodeRef:
    """How to reach one federation node: its namespace in its cluster."""

    name: str
    namespace: str
    address: str
    kubeconfig: str | None = None
    context: str | None = None
    port_range: str = "51820-51919"
    netns: str | None = None


@dataclass
class Connections:
    """kubernetes-client API objects, one per (kubeconfig, context), made on first use."""

    _clients: dict[tuple, client.ApiClient] = field(default_factory=dict)

    def api(self, node: NodeRef) -> client.ApiClient:
        key = (node.kubeconfig, node.context)
        if key not in self._clients:
            self._clients[key] = config.new_client_from_config(config_file=node.kubeconfig,
                                                               context=node.context)
        return self._clients[key]

    def custom(self, node: NodeRef) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api(node))

    def core(self, node: NodeRef) -> client.CoreV1Api:
        return client.CoreV1Api(self.api(node))


def _missing(error: ApiException) -> bool:
    return error.status == 404


class Cluster:
    """The provisioner's view of the federation's API servers."""

    def __init__(self, *, connections: Connections | None = None, dry_run: bool = False) -> None:
        self.connections = connections or Connections()
        # Check mode: every write is sent with dryRun=All, so the API server validates it
        # and nothing is stored.
        self.dry_run = dry_run
        self.writes = 0

    def _write_options(self) -> dict[str, Any]:
        return {"dry_run": "All"} if self.dry_run else {}

    # -- reads ----------------------------------------------------------------------------
    def list_services(self, node: NodeRef) -> list[dict]:
        return self.connections.custom(node).list_namespaced_custom_object(
            GROUP, VERSION, node.namespace, SERVICES)["items"]

    def get_service(self, node: NodeRef, name: str) -> dict | None:
        try:
            return self.connections.custom(node).get_namespaced_custom_object(
                GROUP, VERSION, node.namespace, SERVICES, name)
        except ApiException as error:
            if _missing(error):
                return None
            raise

    def list_domains(self, node: NodeRef) -> list[dict]:
        return self.connections.custom(node).list_namespaced_custom_object(
            GROUP, VERSION, node.namespace, DOMAINS)["items"]

    def get_domain(self, node: NodeRef, name: str) -> dict | None:
        try:
            return self.connections.custom(node).get_namespaced_custom_object(
                GROUP, VERSION, node.namespace, DOMAINS, name)
        except ApiException as error:
            if _missing(error):
                return None
            raise

    def list_pods(self, node: NodeRef) -> dict[str, dict]:
        pods = self.connections.core(node).list_namespaced_pod(node.namespace)
        return {pod.metadata.name: self.connections.api(node).sanitize_for_serialization(pod)
                for pod in pods.items}

    def list_secrets(self, node: NodeRef, *, label_selector: str) -> dict[str, dict]:
        secrets = self.connections.core(node).list_namespaced_secret(
            node.namespace, label_selector=label_selector)
        return {secret.metadata.name: self.connections.api(node).sanitize_for_serialization(secret)
                for secret in secrets.items}

    # -- writes ---------------------------------------------------------------------------
    def _conflicts(self, call, *args, **kwargs) -> dict:
        try:
            result = call(*args, **kwargs, **self._write_options())
        except ApiException as error:
            if error.status == 409:
                raise Conflict(str(error.reason)) from None
            raise
        self.writes += 1
        return result

    def create_service(self, node: NodeRef, body: dict) -> dict:
        return self._conflicts(self.connections.custom(node).create_namespaced_custom_object,
                               GROUP, VERSION, node.namespace, SERVICES, body)

    def replace_service(self, node: NodeRef, body: dict) -> dict:
        """PUT with the body's resourceVersion: a Conflict when the object moved on."""
        return self._conflicts(self.connections.custom(node).replace_namespaced_custom_object,
                               GROUP, VERSION, node.namespace, SERVICES, body["metadata"]["name"], body)

    def delete_service(self, node: NodeRef, name: str) -> None:
        try:
            self._conflicts(self.connections.custom(node).delete_namespaced_custom_object,
                            GROUP, VERSION, node.namespace, SERVICES, name)
        except ApiException as error:
            if not _missing(error):
                raise

    def replace_service_status(self, node: NodeRef, body: dict) -> dict:
        return self._conflicts(self.connections.custom(node).replace_namespaced_custom_object_status,
                               GROUP, VERSION, node.namespace, SERVICES, body["metadata"]["name"], body)

    def replace_domain_status(self, node: NodeRef, body: dict) -> dict:
        return self._conflicts(self.connections.custom(node).replace_namespaced_custom_object_status,
                               GROUP, VERSION, node.namespace, DOMAINS, body["metadata"]["name"], body)

    def create_secret(self, node: NodeRef, body: dict) -> dict:
        return self._conflicts(self.connections.core(node).create_namespaced_secret,
                               node.namespace, body)

    def delete_secret(self, node: NodeRef, name: str) -> None:
        try:
            self._conflicts(self.connections.core(node).delete_namespaced_secret, name, node.namespace)
        except ApiException as error:
            if not _missing(error):
                raise

    def patch_pod_labels(self, node: NodeRef, pod: str, labels: dict[str, str | None]) -> None:
        self._conflicts(self.connections.core(node).patch_namespaced_pod, pod, node.namespace,
                        {"metadata": {"labels": labels}})

    def record_event(self, node: NodeRef, *, service: dict, reason: str, message: str,
                     warning: bool) -> None:
        """A core/v1 Event on the dtService, as `kubectl describe` lists them."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = service["metadata"]
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": node.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": "dtService", "name": meta["name"],
                               "namespace": node.namespace, "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
            "source": {"component": EVENT_SOURCE}, "reportingComponent": EVENT_SOURCE,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._conflicts(self.connections.core(node).create_namespaced_event, node.namespace, body)
