"""One whole pass over a node, for the reconciler daemon: the steps of deploy's roles in one
process, so a `kubectl apply` costs one module run instead of four.

Owns only the order: reconcile the dtServices (with the teardown finalizer), label the pods,
bring the interfaces up (and remove those of deleted dtServices), then finish the deletions
users asked for. Each step is the same core code the separate modules run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from . import plan, teardown
from .agent import NodeAgent
from .cluster import Cluster, NodeRef
from .reconcile import FINALIZER, NodeReconciler


def node_pass(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef],
              handshake_timeout: float, check_mode: bool) -> dict[str, Any]:
    outcomes = NodeReconciler(cluster=cluster, node=node, federation=federation).reconcile(finalizer=True)
    services = [o.as_dict() for o in outcomes]
    label_patches = plan.label_changes(pods=cluster.list_pods(node), wanted=plan.pods_labels(services))
    for pod, labels in label_patches.items():
        cluster.patch_pod_labels(node, pod, labels)
    interfaces, removed = NodeAgent(cluster=cluster, node=node, federation=federation,
                                    handshake_timeout=handshake_timeout, check_mode=check_mode).run()
    finished = []
    for service in cluster.list_services(node):
        if service["metadata"].get("deletionTimestamp") and FINALIZER in (service["metadata"].get("finalizers") or []):
            teardown.remove_service(cluster=cluster, node=node, federation=federation, service=service)
            finished.append(service["metadata"]["name"])
    return {"services": services, "pod_labels": label_patches, "interfaces": [asdict(i) for i in interfaces],
            "removed_interfaces": removed, "deleted": finished,
            "changed": bool(label_patches or removed or finished) or any(o.changed for o in outcomes)
            or any(i.changed for i in interfaces)}
