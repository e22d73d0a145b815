"""The server's allocation table: its dtService's ``peers``, and the clients' claims on it.

Owns the writes that give a network's peers their addresses. Serving: the server's
dtService rebuilds its ``peers`` from the live clients' own entries (a departed client's
address is freed, a hand edit reverted) and carries no ``spec.server``; a client a failover
made the hub gets its table the same way, from the old hub's table. Joining: a client
claims an address in the server's table with an optimistic write (the table's
``resourceVersion``; a Conflict means another client claimed first, so it re-reads and
claims again), then records its own entry and the server's in its own ``peers`` and
``spec.server``. Threads of one process that write the same table take turns on its
``SharedObject``, and the claims that queued during one write go in the next, together.
What the tables hold is ``rules/plan.py``'s.
"""

from __future__ import annotations

import copy

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.control.view import PassView
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import registry as registry_rules


def serve_network(view: PassView, *, service: dict, domain: contract.Domain, entry: dict, public_key: str) -> None:
    """Make the server's ``peers`` the table of the network's live clients (and drop any ``spec.server``)."""
    name = service["metadata"]["name"]
    before = ((service.get("peers") or {}).get(registry_rules.hub_address(entry)) or {}).get("publicKey")
    table = install_table(view, node=view.node, name=name, domain=domain, entry=entry, public_key=public_key)["peers"]
    if before is not None and before != public_key:
        _tell_clients(view, name=name, domain=domain, entry=entry, table=table)


def install_table(view: PassView, *, node: contract.NodeRef, name: str, domain: contract.Domain, entry: dict,
                  public_key: str, base: dict | None = None) -> dict:
    """Make the ``peers`` of the hub on ``node`` (the one ``entry`` names) the network's table,
    from ``base`` (a table to keep the clients' places from, when a failover hands the
    network on) or else from what it holds; drop its ``spec.server``. Returns it as written."""
    def desired(current: dict) -> dict:
        clients, everyone_answered = _live_clients(view, name, domain, hub_node=node.name)
        peers = plan.server_table(subnet=entry["subnet"], server_uid=current["metadata"]["uid"],
                                  server_key=public_key,
                                  current=base if base is not None else current.get("peers") or {},
                                  live_clients=clients, keep_unseen=not everyone_answered,
                                  hub_address=registry_rules.hub_address(entry))
        spec = {key: value for key, value in current["spec"].items() if key != "server"}
        return {**current, "peers": peers, "spec": spec}
    shared = view.cluster.shared_service(node, name)
    with shared.lock:
        return view.update_service(node, name, desired, shared=shared)


def _tell_clients(view: PassView, *, name: str, domain: contract.Domain, entry: dict, table: dict) -> None:
    """The hub's new key (a rotation) in its clients' own ``peers`` and ``spec.server`` now,
    rather than at their nodes' next passes: the write is what starts those passes in the
    reconciler daemon, and the hub holds back what it sends them until they take the key on.
    A member that does not answer learns it at its next pass."""
    clients, _everyone_answered = live_members(view, name, domain, hub_node=view.node.name)
    for member, client in clients:
        address = plan.address_in_table(table=table, uid=client["metadata"]["uid"])
        if address is None:
            continue
        try:
            record_client(view, node=view.member_node(member), name=name, entry=entry, table=table, address=address)
        except (ApiError, plan.PlanError):
            continue


def live_members(view: PassView, name: str, domain: contract.Domain, *,
                 hub_node: str) -> tuple[list[tuple[contract.Member, dict]], bool]:
    """The network's dtServices (with their members) on the domain's members other than the
    hub's that are not being deleted, and whether every member answered: a member whose API
    server is down (or refuses) says nothing of its clients, which keep their addresses
    until it answers again."""
    found, everyone_answered = [], True
    for member in domain.members:
        if member.name == hub_node:
            continue
        try:
            other = view.service_on(view.member_node(member), name)
        except ApiError:
            everyone_answered = False
            continue
        if other and other["spec"].get("domainSelector") == domain.name \
                and not other["metadata"].get("deletionTimestamp"):
            found.append((member, other))
    return found, everyone_answered


def _live_clients(view: PassView, name: str, domain: contract.Domain, *, hub_node: str) -> tuple[list[dict], bool]:
    found, everyone_answered = live_members(view, name, domain, hub_node=hub_node)
    return [service for _member, service in found], everyone_answered


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
    hub_address = registry_rules.hub_address(entry)

    def hub_listed(hub: dict) -> bool:
        return plan.role_of((hub.get("peers") or {}).get(hub_address) or {}) == contract.SERVER

    cached = view.service_on(hub_node, name)
    if cached is not None and not hub_listed(cached):
        view.forget_services(hub_node)  # read before the server listed itself: read again

    def claim(hub: dict) -> dict:
        if not hub_listed(hub):
            # The server registered the network but has not written its own entry yet (it
            # is being provisioned right now): joining needs its key, so wait for next pass.
            raise plan.PlanError(Status.PENDING, f"the server of network {name} on node {entry['server']['node']} "
                                 "has not set the network up yet; this pod joins on the next pass")
        # claim_in_table makes a new table and leaves the hub's alone, so the hub needs no deep
        # copy (a hub of 100 clients was copied once for each of them).
        claimed["address"], table = plan.claim_in_table(
            table=hub["peers"], subnet=entry["subnet"], uid=uid, public_key=public_key,
            preferred=recorded[0] if recorded else None,
            index=view.cluster.shared_service(hub_node, name).derived(hub["peers"], plan.table_index))
        return {**hub, "peers": table}
    hub = view.update_shared_service(hub_node, name, claim)
    address = claimed["address"]

    record_client(view, node=view.node, name=name, entry=entry, table=hub["peers"], address=address)
    return address


def record_client(view: PassView, *, node: contract.NodeRef, name: str, entry: dict, table: dict,
                  address: str) -> None:
    """Record the hub (as ``entry`` and its ``table`` name it) and the client's ``address`` in
    the ``peers`` and ``spec.server`` of the client on ``node``."""
    def record(current: dict) -> dict:
        # A new object around the current one's parts, which stay as they are: a deep copy
        # of each client's dtService (managedFields and all) was a tenth of a converged pass.
        peers, server = plan.client_fields(
            hub_table=table, subnet=entry["subnet"], endpoint=entry["endpoint"], own_address=address,
            hub_address=registry_rules.hub_address(entry))
        return {**current, "peers": peers, "spec": {**current["spec"], "server": server}}
    view.update_service(node, name, record)
