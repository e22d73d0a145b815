"""The server's allocation table: its dtService's ``peers``, and the clients' claims on it.

Owns the writes that give a network's peers their addresses. Serving: the server's
dtService rebuilds its ``peers`` from the live clients' own entries (a departed client's
address is freed, a hand edit reverted) and carries no ``spec.server``. Joining: a client
claims an address in the server's table with an optimistic write (the table's
``resourceVersion``; a Conflict means another client claimed first, so it re-reads and
claims again), then records its own entry and the server's in its own ``peers`` and
``spec.server``. Threads of one process that write the same table take turns on its
``SharedObject``. What the tables hold is ``rules/plan.py``'s.
"""

from __future__ import annotations

import copy

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.control.view import PassView
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing, plan


def serve_network(view: PassView, *, service: dict, domain: contract.Domain, entry: dict, public_key: str) -> None:
    """Make the server's ``peers`` the table of the network's live clients (and drop any ``spec.server``)."""
    def desired(current: dict) -> dict:
        body = copy.deepcopy(current)
        clients, everyone_answered = _live_clients(view, current["metadata"]["name"], domain)
        body["peers"] = plan.server_table(subnet=entry["subnet"], server_uid=current["metadata"]["uid"],
                                          server_key=public_key, current=current.get("peers") or {},
                                          live_clients=clients, keep_unseen=not everyone_answered)
        body["spec"].pop("server", None)
        return body
    shared = view.cluster.shared_service(view.node, service["metadata"]["name"])
    hub_address = addressing.server_address(subnet=entry["subnet"])
    with shared.lock:
        before = ((shared.latest or service).get("peers") or {}).get(hub_address, {}).get("publicKey")
        table = view.update_service(view.node, service["metadata"]["name"], desired, shared=shared)["peers"]
    if before is not None and before != public_key:
        _tell_clients(view, name=service["metadata"]["name"], domain=domain, entry=entry, table=table)


def _tell_clients(view: PassView, *, name: str, domain: contract.Domain, entry: dict, table: dict) -> None:
    """The hub's new key (a rotation) in its clients' own ``peers`` and ``spec.server`` now,
    rather than at their nodes' next passes: the write is what starts those passes in the
    reconciler daemon, and the hub holds back what it sends them until they take the key on.
    A member that does not answer learns it at its next pass."""
    for member in domain.members:
        if member.name == view.node.name:
            continue
        try:
            node = view.member_node(member)
            client = view.service_on(node, name)
            if not client or client["spec"].get("domainSelector") != domain.name \
                    or client["metadata"].get("deletionTimestamp"):
                continue
            address = plan.address_in_table(table=table, uid=client["metadata"]["uid"])
            if address is None:
                continue

            def record(current: dict, own: str = address) -> dict:
                body = copy.deepcopy(current)
                body["peers"], body["spec"]["server"] = plan.client_fields(
                    hub_table=table, subnet=entry["subnet"], endpoint=entry["endpoint"], own_address=own)
                return body
            view.update_service(node, name, record)
        except (ApiError, plan.PlanError):
            continue


def _live_clients(view: PassView, name: str, domain: contract.Domain) -> tuple[list[dict], bool]:
    """The network's dtServices on the domain's other members that are not being deleted, and
    whether every member answered: a member whose API server is down (or refuses) says
    nothing of its clients, which keep their addresses until it answers again."""
    clients, everyone_answered = [], True
    for member in domain.members:
        if member.name == view.node.name:
            continue
        try:
            other = view.service_on(view.member_node(member), name)
        except ApiError:
            everyone_answered = False
            continue
        if other and other["spec"].get("domainSelector") == domain.name \
                and not other["metadata"].get("deletionTimestamp"):
            clients.append(other)
    return clients, everyone_answered


def _record_new_key(view: PassView, *, name: str, public_key: str) -> tuple[str, dict] | None:
    """A client's new key (a rotation) in its own entry before the hub's table: serving takes a
    client's key from its own entry, so a hub's pass that runs between the two writes keeps
    the new key rather than putting the old one back."""
    def desired(current: dict) -> dict:
        body = copy.deepcopy(current)
        own = plan.self_entry(body)
        if own is not None:
            body["peers"][own[0]]["publicKey"] = public_key
        return body
    return plan.self_entry(view.update_service(view.node, name, desired))


def join_network(view: PassView, *, service: dict, domain: contract.Domain, entry: dict, public_key: str) -> str:
    """Claim the client's address in the server's table, record it (and the server) in the
    client's own ``peers`` and ``spec.server``; returns the address."""
    name = service["metadata"]["name"]
    uid = service["metadata"]["uid"]
    hub_node = view.member_node(domain.member(name=entry["server"]["node"]) or domain.home)
    recorded = plan.self_entry(service)
    if recorded is not None and recorded[1].get("publicKey") != public_key:
        recorded = _record_new_key(view, name=name, public_key=public_key)
    claimed: dict[str, str] = {}
    hub_address = addressing.server_address(subnet=entry["subnet"])
    cached = view.service_on(hub_node, name)
    if cached is not None and hub_address not in (cached.get("peers") or {}):
        view.forget_services(hub_node)  # read before the server listed itself: read again

    def claim(hub: dict) -> dict:
        if hub_address not in (hub.get("peers") or {}):
            # The server registered the network but has not written its own entry yet (it
            # is being provisioned right now): joining needs its key, so wait for next pass.
            raise plan.PlanError(Status.PENDING, f"the server of network {name} on node {entry['server']['node']} "
                                 "has not set the network up yet; this pod joins on the next pass")
        body = copy.deepcopy(hub)
        claimed["address"], body["peers"] = plan.claim_in_table(
            table=body["peers"], subnet=entry["subnet"], uid=uid, public_key=public_key,
            preferred=recorded[0] if recorded else None)
        return body
    shared = view.cluster.shared_service(hub_node, name)
    with shared.lock:
        hub = view.update_service(hub_node, name, claim, shared=shared)
    address = claimed["address"]

    def record(current: dict) -> dict:
        body = copy.deepcopy(current)
        body["peers"], body["spec"]["server"] = plan.client_fields(
            hub_table=hub["peers"], subnet=entry["subnet"], endpoint=entry["endpoint"], own_address=address)
        return body
    view.update_service(view.node, name, record)
    return address
