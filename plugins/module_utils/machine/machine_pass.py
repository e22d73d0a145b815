"""One whole pass over the nodes of a machine, for the reconciler daemon: the steps of
deploy's roles in one process, so a `kubectl apply` costs one module run instead of four.

Owns the order, in phases over all nodes of the call: reconcile the dtServices (with the
teardown finalizer) and label the pods of every node first (``reconcile_phase``, also the
whole of the dtservice_reconcile module), then bring the interfaces up (and
remove those of deleted dtServices) on every node, then wait for the clients' first
handshakes and finish the deletions users asked for. Because every
node's claims are written before any interface is configured, a joiner and its server in the
same call meet in that call: the server's interface already knows the joiner when the joiner
waits for its first handshake. Each step is the same core code the separate modules run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.control import teardown
from ansible_collections.sightline.dtservice.plugins.module_utils.control.reconciler import NodeReconciler, Outcome
from ansible_collections.sightline.dtservice.plugins.module_utils.data.podnet import RuntimeViews
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster
from ansible_collections.sightline.dtservice.plugins.module_utils.machine.agent import AgentOutcome, NodeAgent
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan


def reconcile_phase(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef],
                    only: set[str] | None = None, finalizer: bool = True) -> tuple[list[Outcome], dict[str, Any]]:
    """Reconcile the node's dtServices (``only`` these, when given) and, for a whole pass,
    label its pods with their dtService roles; returns the outcomes and the label patches."""
    outcomes = NodeReconciler(cluster=cluster, node=node, federation=federation).provision(
        only=only, finalizer=finalizer)
    if only is not None:
        return outcomes, {}  # the pods' other dtServices were not looked at: their labels stay
    label_patches = plan.label_changes(pods=cluster.list_pods(node),
                                       wanted=plan.pods_labels(o.as_dict() for o in outcomes))
    for pod, labels in label_patches.items():
        cluster.patch_pod_labels(node, pod, labels)
    return outcomes, label_patches


@dataclass
class Attaching:
    """A node between its two agent steps: interfaces configured, clients not yet waited on."""

    cluster: Cluster
    node: NodeRef
    agent: NodeAgent
    services: list[dict]
    interfaces: list[AgentOutcome]
    removed: list[dict[str, str]]


def configure_phase(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef], handshake_timeout: float,
                    check_mode: bool, runtimes: RuntimeViews | None = None) -> Attaching:
    """The node's interfaces configured (and those of deleted dtServices removed)."""
    # One list for both steps: a dtService being deleted in it has its interface removed by
    # the agent before its deletion is finished. (Listed again afterwards, one deleted
    # meanwhile would be let go with its interface still in the pod.)
    services = cluster.list_services(node)
    agent = NodeAgent(cluster=cluster, node=node, federation=federation, handshake_timeout=handshake_timeout,
                      check_mode=check_mode, runtimes=runtimes)
    interfaces, removed = agent.configure(services)
    return Attaching(cluster=cluster, node=node, agent=agent, services=services, interfaces=interfaces,
                     removed=removed)


def settle_phase(attaching: Attaching, *, federation: Mapping[str, NodeRef]) -> dict[str, Any]:
    """The node's clients waited on, and the deletions users asked for finished."""
    attaching.agent.settle()
    finished = []
    for service in attaching.services:
        finalizers = service["metadata"].get("finalizers") or []
        if service["metadata"].get("deletionTimestamp") and contract.FINALIZER in finalizers:
            teardown.remove_service(cluster=attaching.cluster, node=attaching.node, federation=federation,
                                    service=service)
            finished.append(service["metadata"]["name"])
    interfaces, removed = attaching.interfaces, attaching.removed
    return {"interfaces": [asdict(i) for i in interfaces], "removed_interfaces": removed, "deleted": finished,
            "changed": bool(removed or finished) or any(i.changed for i in interfaces)}


def machine_pass(run_on_nodes: Callable[[Callable[..., Any]], dict[str, Any]], *, federation: Mapping[str, NodeRef],
                 handshake_timeout: float, check_mode: bool) -> dict[str, dict[str, Any]]:
    """The phases over the nodes ``run_on_nodes(work)`` runs ``work`` on; node -> result.
    Every node's interfaces are configured before any client is waited on."""
    reconciled = {}
    for name, (outcomes, label_patches) in run_on_nodes(
            lambda *, cluster, node: reconcile_phase(cluster=cluster, node=node, federation=federation)).items():
        reconciled[name] = {"services": [o.as_dict() for o in outcomes], "pod_labels": label_patches,
                            "changed": bool(label_patches) or any(o.changed for o in outcomes)}
    runtimes = RuntimeViews()  # nodes that share a machine share one listing of its runtime
    configured = run_on_nodes(lambda *, cluster, node: configure_phase(
        cluster=cluster, node=node, federation=federation, handshake_timeout=handshake_timeout,
        check_mode=check_mode, runtimes=runtimes))
    attached = run_on_nodes(lambda *, cluster, node: settle_phase(configured[node.name], federation=federation))
    return {name: {**reconciled[name], **attached[name],
                   "changed": reconciled[name]["changed"] or attached[name]["changed"]} for name in reconciled}
