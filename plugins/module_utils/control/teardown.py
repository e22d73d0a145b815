"""Taking a dtService out of its network: the control-plane half of a deletion.

Owns what must happen before a dtService object may go: its entry leaves the server's
``peers`` table (a client), or its network is handed to one of its clients (the server; the
network leaves the domain registry with its last peer), its key
Secret is deleted, and the object is deleted. The interfaces follow on the next agent pass
on each node (the agent removes interfaces no dtService asks for and peers no table lists).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from http import HTTPStatus

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.control import registry
from ansible_collections.sightline.dtservice.plugins.module_utils.control.view import MAX_ATTEMPTS, PassView
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Conflict, NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan


def leave_network(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef], service: dict) -> bool:
    """Free the dtService's address (or hand its network on, for the server); True if written."""
    name = service["metadata"]["name"]
    own_id = contract.peer_id(uid=service["metadata"]["uid"])
    domain_obj = cluster.get_domain(node, service["spec"]["domainSelector"])
    if domain_obj is None:
        return False
    domain = contract.Domain.from_object(domain_obj)
    home = federation.get(domain.home.name)
    if home is None:
        raise plan.PlanError(Status.FAILED, f"the home node {domain.home.name} of dtDomain {domain.name} "
                             "is not in this inventory")
    for _attempt in range(MAX_ATTEMPTS):
        home_obj = cluster.get_domain(home, domain.name)
        entry = ((home_obj or {}).get("status") or {}).get("networks", {}).get(name)
        if home_obj is None or entry is None:
            return False
        if entry["server"]["id"] == own_id:
            # A hub with clients hands its network to one of them (its own deletion makes the
            # hub gone); the network leaves the registry only with its last peer.
            view = PassView(cluster=cluster, node=node, federation=federation)
            registry.hand_over(view, domain=contract.Domain.from_object(home_obj), name=name, leaving=own_id)
            return True
        hub_node = federation.get(entry["server"]["node"])
        hub = cluster.get_service(hub_node, name) if hub_node else None
        if hub_node is None or hub is None:
            return False
        table = hub.get("peers") or {}
        kept = {address: e for address, e in table.items() if plan.id_of(e) != own_id}
        if kept == table:
            return False
        body = copy.deepcopy(hub)
        body["peers"] = kept
        try:
            cluster.replace_service(hub_node, body)
            return True
        except Conflict:
            continue
        except ApiError as error:
            # The hub was deleted meanwhile (a teardown of several nodes at once): no table left.
            if error.status == HTTPStatus.NOT_FOUND:
                return False
            raise
    raise plan.PlanError(Status.FAILED, f"the network {name} kept changing while {node.name} left it")


def remove_service(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef], service: dict) -> None:
    """Leave the network, delete the key Secret, release our finalizer, delete the object."""
    leave_network(cluster=cluster, node=node, federation=federation, service=service)
    cluster.delete_secret(node, contract.key_secret_name(service["metadata"]["name"]))
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
