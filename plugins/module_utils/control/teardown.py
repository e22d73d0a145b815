"""Taking a dtService out of its network: the control-plane half of a deletion.

Owns what must happen before a dtService object may go: its entry leaves the server's
``peers`` table (a client), or its network is handed to one of its clients (the server; the
network leaves the domain registry with its last peer), its key
Secret is deleted, and the object is deleted. The interfaces follow on the next agent pass
on each node (the agent removes interfaces no dtService asks for and peers no table lists).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.control import registry
from ansible_collections.sightline.dtservice.plugins.module_utils.control.view import (
    MAX_ATTEMPTS,
    PassView,
    ServiceMissing,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Conflict, NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan


def leave_network(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef], service: dict) -> None:
    """Free the dtService's address in its hub's table (or hand its network on, for the hub)."""
    name = service["metadata"]["name"]
    own_id = contract.peer_id(uid=service["metadata"]["uid"])
    domain_obj = cluster.get_domain(node, service["spec"]["domainSelector"])
    if domain_obj is None:
        return
    domain = contract.Domain.from_object(domain_obj)
    home = federation.get(domain.home.name)
    if home is None:
        raise plan.PlanError(Status.FAILED, f"the home node {domain.home.name} of dtDomain {domain.name} "
                             "is not in this inventory")
    view = PassView(cluster=cluster, node=node, federation=federation)

    def without_me(hub: dict) -> dict:
        table = hub.get("peers") or {}
        kept = {address: e for address, e in table.items() if plan.id_of(e) != own_id}
        return hub if kept == table else {**hub, "peers": kept}

    gone_hub = None
    for _attempt in range(MAX_ATTEMPTS):
        home_obj = cluster.get_domain(home, domain.name)
        entry = ((home_obj or {}).get("status") or {}).get("networks", {}).get(name)
        if home_obj is None or entry is None:
            return
        if entry["server"]["id"] == own_id:
            # A hub with clients hands its network to one of them (its own deletion makes the
            # hub gone); the network leaves the registry only with its last peer.
            registry.hand_over(view, domain=contract.Domain.from_object(home_obj), name=name, leaving=own_id)
            return
        hub_node = federation.get(entry["server"]["node"])
        if hub_node is None or entry["server"]["id"] == gone_hub:
            return
        # The clients of a hub leaving at once (a teardown) write its table together, a write
        # for those that queued meanwhile, rather than each retrying on the others' Conflicts.
        try:
            view.update_shared_service(hub_node, name, without_me)
            return
        except ServiceMissing:
            # The hub was deleted meanwhile (a teardown of several nodes at once): look again
            # whether the network was handed on to a hub whose table still holds this client.
            gone_hub = entry["server"]["id"]
    raise plan.PlanError(Status.FAILED, f"the network {name} kept changing while {node.name} left it")


def remove_chosen(run_on_nodes: Callable[[Callable[..., Any]], dict[str, Any]], *,
                  federation: Mapping[str, NodeRef], names: Collection[str] | None) -> dict[str, list[str]]:
    """Remove the dtServices ``names`` (every one when None) of the nodes ``run_on_nodes(work)``
    works on; node name -> the names removed there. All are deleted first, and only then taken
    out of their networks: our finalizer holds each meanwhile, and a leaving hub hands its
    network to none of them. (Taken out one at a time while the others still looked live, a hub
    of 100 clients handed its network to a client that was being removed too, which handed it
    on in turn, and the teardown gave up.)"""
    def delete(*, cluster: Cluster, node: NodeRef) -> list[str]:
        chosen = [s for s in cluster.list_services(node) if names is None or s["metadata"]["name"] in names]
        for service in chosen:
            if not service["metadata"].get("deletionTimestamp"):
                cluster.delete_service(node, service["metadata"]["name"])
        return [service["metadata"]["name"] for service in chosen]

    deleted = run_on_nodes(delete)

    def take_out(*, cluster: Cluster, node: NodeRef) -> list[str]:
        for name in deleted[node.name]:
            service = cluster.get_service(node, name)
            if service is None:  # it did not carry our finalizer, so the DELETE removed it
                cluster.delete_secret(node, name)
            else:
                remove_service(cluster=cluster, node=node, federation=federation, service=service)
        return deleted[node.name]

    return {name: removed for name, removed in run_on_nodes(take_out).items() if removed}


def remove_service(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef], service: dict) -> None:
    """Leave the network, delete the key Secret, release our finalizer, delete the object."""
    leave_network(cluster=cluster, node=node, federation=federation, service=service)
    cluster.delete_secret(node, service["metadata"]["name"])
    release_finalizer(cluster=cluster, node=node, service=service)
    if not service["metadata"].get("deletionTimestamp"):
        cluster.delete_service(node, service["metadata"]["name"])


def release_finalizer(*, cluster: Cluster, node: NodeRef, service: dict) -> None:
    """Drop our finalizer, re-reading the object when it moved on since it was read."""
    current: dict | None = service
    for _attempt in range(MAX_ATTEMPTS):
        if current is None:
            return
        finalizers = current["metadata"].get("finalizers") or []
        if contract.FINALIZER not in finalizers:
            return
        body = copy.deepcopy(current)
        body["metadata"]["finalizers"] = [f for f in finalizers if f != contract.FINALIZER]
        try:
            cluster.replace_service(node, body)
            return
        except Conflict:
            current = cluster.get_service(node, service["metadata"]["name"])
    raise plan.PlanError(Status.FAILED, f"could not release the finalizer of {service['metadata']['name']}")
