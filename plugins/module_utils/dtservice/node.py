"""One whole pass over the nodes of a machine, for the reconciler daemon: the steps of
deploy's roles in one process, so a `kubectl apply` costs one module run instead of four.

Owns the order, in phases over all nodes of the call: reconcile the dtServices (with the
teardown finalizer) and label the pods of every node first (``reconcile_phase``, also the
whole of the dtservice_reconcile module), then bring the interfaces up (and
remove those of deleted dtServices), then finish the deletions users asked for. Because every
node's claims are written before any interface is configured, a joiner and its server in the
same call meet in that call: the server's interface already knows the joiner when the joiner
waits for its first handshake. Each step is the same core code the separate modules run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from . import plan, teardown
from .agent import NodeAgent
from .cluster import Cluster, NodeRef
from .reconcile import FINALIZER, NodeReconciler, Outcome


def reconcile_phase(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef],
                    only: set[str] | None = None, finalizer: bool = True) -> tuple[list[Outcome], dict[str, Any]]:
    """Reconcile the node's dtServices (``only`` these, when given) and, for a whole pass,
    label its pods with their dtService roles; returns the outcomes and the label patches."""
    outcomes = NodeReconciler(cluster=cluster, node=node, federation=federation).reconcile(
        only=only, finalizer=finalizer)
    if only is not None:
        return outcomes, {}  # the pods' other dtServices were not looked at: their labels stay
    label_patches = plan.label_changes(pods=cluster.list_pods(node),
                                       wanted=plan.pods_labels(o.as_dict() for o in outcomes))
    for pod, labels in label_patches.items():
        cluster.patch_pod_labels(node, pod, labels)
    return outcomes, label_patches


def agent_phase(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef], handshake_timeout: float,
                check_mode: bool) -> dict[str, Any]:
    # Read before the agent lists them itself: a dtService being deleted here is being deleted
    # there too, so its interface is gone before the deletion is finished. (Read after, one
    # deleted meanwhile would be let go with its interface still in the pod.)
    services = cluster.list_services(node)
    interfaces, removed = NodeAgent(cluster=cluster, node=node, federation=federation,
                                    handshake_timeout=handshake_timeout, check_mode=check_mode).run()
    finished = []
    for service in services:
        if service["metadata"].get("deletionTimestamp") and FINALIZER in (service["metadata"].get("finalizers") or []):
            teardown.remove_service(cluster=cluster, node=node, federation=federation, service=service)
            finished.append(service["metadata"]["name"])
    return {"interfaces": [asdict(i) for i in interfaces], "removed_interfaces": removed, "deleted": finished,
            "changed": bool(removed or finished) or any(i.changed for i in interfaces)}


def machine_pass(run_on_nodes: Callable[[Callable[..., Any]], dict[str, Any]], *, federation: Mapping[str, NodeRef],
                 handshake_timeout: float, check_mode: bool) -> dict[str, dict[str, Any]]:
    """Both phases over the nodes ``run_on_nodes(work)`` runs ``work`` on; node -> result."""
    reconciled = {}
    for name, (outcomes, label_patches) in run_on_nodes(
            lambda *, cluster, node: reconcile_phase(cluster=cluster, node=node, federation=federation)).items():
        reconciled[name] = {"services": [o.as_dict() for o in outcomes], "pod_labels": label_patches,
                            "changed": bool(label_patches) or any(o.changed for o in outcomes)}
    attached = run_on_nodes(lambda *, cluster, node: agent_phase(
        cluster=cluster, node=node, federation=federation, handshake_timeout=handshake_timeout,
        check_mode=check_mode))
    return {name: {**reconciled[name], **attached[name],
                   "changed": reconciled[name]["changed"] or attached[name]["changed"]} for name in reconciled}
