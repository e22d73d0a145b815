"""A network's entry in its dtDomain's registry: the home dtDomain's ``status.networks``.

Owns reading the registry and registering a network in it: the first dtService of a name
claims the network (its subnet, and its own node's UDP port beside the ports that node's
networks of every domain already use and those other processes hold on its address) and
becomes its server; a hub whose port another process holds moves to a free one; a server's dtService made
again on the same node keeps the network. A network whose hub is gone (its dtService
deleted, or its pod gone past the domain's grace, which the hub's own pass records here) is
handed to one of its clients, which keeps its address and serves the table from there;
with no client left, it is registered anew. A name is one network in the whole federation, so a name another domain
registered is refused. The registry is written with its ``resourceVersion``; a Conflict
means another provisioner registered first, so it is read again. Two domains' registries are
two objects, so a new network's port is checked once more after it is written: where another
domain's network on the same node took the same port meanwhile, the network whose (domain,
name) sorts later gives its port up and is registered again. What an entry holds is
``rules/registry.py``'s.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.control import claims
from ansible_collections.sightline.dtservice.plugins.module_utils.control.view import (
    MAX_ATTEMPTS,
    PassView,
    ServiceMissing,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Conflict
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing, plan
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import registry as registry_rules


def register_network(view: PassView, *, service: dict, domain: contract.Domain, me: contract.Member) -> dict:
    """The registry entry of the dtService's network, registering the network (with this
    dtService as its server) when it has none or its server's dtService is gone."""
    name = service["metadata"]["name"]
    own_id = contract.peer_id(uid=service["metadata"]["uid"])
    home = view.member_node(domain.home)
    fresh = False
    for _attempt in range(MAX_ATTEMPTS):
        home_obj = view.domain_object(home, domain.name, fresh=fresh)
        if home_obj is None:
            raise plan.PlanError(Status.DOMAIN_NOT_FOUND, f"dtDomain {domain.name!r} is missing on its home "
                                 f"node {domain.home.name} ({domain.home.namespace})")
        networks = dict(registry_rules.networks_of(home_obj))
        entry = networks.get(name)
        server = (entry or {}).get("server", {})
        if entry and server.get("id") == own_id:
            # A hub that listens holds its port: only one that does not yet is looked at (so a
            # converged pass reads no socket table).
            if service.get("status") == Status.CONNECTED \
                    or registry_rules.endpoint_port(entry["endpoint"]) not in view.ports_in_use():
                return entry
            # Another process took the hub's port before the hub could listen: the network
            # moves to a free port, and its clients follow the registry.
            networks[name] = _moved_entry(view, domain=domain, me=me, entry=entry, networks=networks)
        elif entry and (server.get("namespace"), server.get("name")) == (view.node.namespace, name):
            # The server's dtService was deleted and made again here: it stays the server.
            networks[name] = {**entry, "server": {**server, "id": own_id}}
        elif entry:
            if not hub_gone(view, domain=domain, name=name, entry=entry):
                return entry
            handed = hand_over(view, domain=domain, name=name)
            if handed is not None:
                return handed
            # No client could take the network over: it left the registry, and this
            # dtService registers it anew.
            fresh = True
            continue
        else:
            _check_name_free(view, name=name, domain=domain)
            networks[name] = _new_entry(view, name=name, domain=domain, me=me, own_id=own_id, networks=networks)
        body = copy.deepcopy(home_obj)
        body.setdefault("status", {})["networks"] = networks
        try:
            view.remember_domain(home, view.cluster.replace_domain_status(home, body))
        except Conflict:
            fresh = True
            continue
        if not _loses_port(view, domain=domain, name=name, entry=networks[name]):
            return networks[name]
        # Released at once, so the network that keeps the port never shares it for long.
        _release(view, home=home, domain=domain, name=name, own_id=own_id)
        fresh = True
    raise plan.PlanError(Status.FAILED, f"the registry of dtDomain {domain.name} kept changing; gave up after "
                         f"{MAX_ATTEMPTS} attempts")


def hub_gone(view: PassView, *, domain: contract.Domain, name: str, entry: dict) -> bool:
    """Whether the network's hub is to be replaced: its dtService is gone or being deleted, or
    its pod has been gone for longer than the domain's grace."""
    server = entry["server"]
    hub = view.service_on(view.member_node(domain.member(name=server["node"]) or domain.home), name)
    if hub is None or contract.peer_id(uid=hub["metadata"]["uid"]) != server["id"] \
            or hub["metadata"].get("deletionTimestamp"):
        return True
    left = registry_rules.failover_in(entry, grace=domain.failover_grace_seconds, now=time.time())
    return left is not None and left <= 0


def hand_over(view: PassView, *, domain: contract.Domain, name: str, leaving: str | None = None) -> dict | None:
    """Hand network ``name`` from its gone hub to one of its live clients (``plan.successor``),
    which keeps its address and gets a port of its own node; the new hub's table keeps every
    other client where the old one had it. Returns the network's entry afterwards, or None
    when no client could take it (the network then leaves the registry). When another
    provisioner handed it over first, its entry is returned as it is. ``leaving``: the peer
    id of a hub that is leaving the network now (its teardown), gone whatever it looks like."""
    home = view.member_node(domain.home)
    # The clients' places; kept when a chosen successor is gone before it took the network on.
    old_table: dict = {}
    for _attempt in range(MAX_ATTEMPTS):
        home_obj = view.domain_object(home, domain.name, fresh=True)
        if home_obj is None:
            return None
        networks = dict(registry_rules.networks_of(home_obj))
        entry = networks.get(name)
        if entry is None:
            return None
        if entry["server"]["id"] != leaving and not hub_gone(view, domain=domain, name=name, entry=entry):
            return entry
        old_node = view.member_node(domain.member(name=entry["server"]["node"]) or domain.home)
        old_table = ((view.service_on(old_node, name) or {}).get("peers")) or old_table
        found, _everyone_answered = claims.live_members(view, name, domain, hub_node=old_node.name)
        chosen = plan.successor(candidates=[service for _member, service in found], subnet=entry["subnet"],
                                table=old_table)
        if chosen is None:
            del networks[name]
        else:
            successor, address, public_key = chosen
            member = next(m for m, s in found if s is successor)
            others = {other: e for other, e in networks.items() if other != name}
            ports_taken = registry_rules.ports_served(
                node=member.name, registries=[others, *_other_registries(view, domain, node=member)])
            networks[name] = registry_rules.handed_over_entry(
                entry=entry, successor=member, name=name, address=address, ports_taken=ports_taken,
                successor_id=contract.peer_id(uid=successor["metadata"]["uid"]))
        body = copy.deepcopy(home_obj)
        body["status"]["networks"] = networks
        try:
            view.remember_domain(home, view.cluster.replace_domain_status(home, body))
        except Conflict:
            continue
        if chosen is None:
            return None
        try:
            table = claims.install_table(view, node=view.member_node(member), name=name, domain=domain,
                                         entry=networks[name], public_key=public_key, base=old_table)["peers"]
        except ServiceMissing:
            # The successor was deleted meanwhile (a teardown of several nodes at once): the
            # registry now names a gone hub, so the next attempt, reading it anew, hands the
            # network on again.
            view.forget_services(view.member_node(member))
            continue
        # The other clients' objects name the new hub at once: their nodes' watches see it, so
        # their interfaces follow even when this pass does not configure them.
        # A client whose API server does not answer records it in its own next pass; one
        # deleted meanwhile needs nothing.
        for other_member, other in found:
            address_there = plan.address_in_table(table=table, uid=other["metadata"]["uid"])
            if other is not successor and address_there is not None:
                with contextlib.suppress(ApiError, ServiceMissing):
                    claims.record_client(view, node=view.member_node(other_member), name=name,
                                         entry=networks[name], table=table, address=address_there)
        return networks[name]
    raise plan.PlanError(Status.FAILED, f"the registry of dtDomain {domain.name} kept changing while network "
                         f"{name} was handed to a new hub; gave up after {MAX_ATTEMPTS} attempts")


def record_absence(view: PassView, *, domain: contract.Domain, name: str, own_id: str, since: str | None) -> None:
    """Record in the registry that the hub ``own_id``'s pod is gone since ``since`` (None: it
    is back), unless the network has another hub by now."""
    def absence(networks: dict[str, Any]) -> bool:
        entry = networks.get(name)
        if entry is None or entry["server"]["id"] != own_id or entry.get(registry_rules.ABSENT_SINCE) == since:
            return False
        networks[name] = registry_rules.with_absence(entry, since=since)
        return True
    _change_registry(view, home=view.member_node(domain.home), domain=domain, change=absence, fresh=False)


def _change_registry(view: PassView, *, home: contract.NodeRef, domain: contract.Domain,
                     change: Callable[[dict[str, Any]], bool], fresh: bool) -> None:
    """Write ``change(networks)`` into the registry (it edits the copy it is given and says
    whether it changed anything), reading the registry again after a Conflict; ``fresh``
    lists it anew for the first attempt too."""
    for _attempt in range(MAX_ATTEMPTS):
        home_obj = view.domain_object(home, domain.name, fresh=fresh)
        networks = dict(registry_rules.networks_of(home_obj))
        if home_obj is None or not change(networks):
            return
        body = copy.deepcopy(home_obj)
        body["status"]["networks"] = networks
        try:
            view.remember_domain(home, view.cluster.replace_domain_status(home, body))
            return
        except Conflict:
            fresh = True


def _loses_port(view: PassView, *, domain: contract.Domain, name: str, entry: dict) -> bool:
    """Whether another domain's network served on the same node took the same port, and
    sorts before this one: the later of the two gives the port up."""
    others = {}
    for other in _other_domains(view, domain):
        home = view.federation.get(other.home.name)
        if home is not None:
            others[other.name] = registry_rules.networks_of(view.domain_object(home, other.name, fresh=True))
    return registry_rules.yields_port(domain=domain.name, name=name, entry=entry, others=others)


def _release(view: PassView, *, home: contract.NodeRef, domain: contract.Domain, name: str, own_id: str) -> None:
    """Take this dtService's network out of the registry again (it registers anew)."""
    def release(networks: dict[str, Any]) -> bool:
        if (networks.get(name) or {}).get("server", {}).get("id") != own_id:
            return False
        del networks[name]
        return True
    _change_registry(view, home=home, domain=domain, change=release, fresh=True)


def _new_entry(view: PassView, *, name: str, domain: contract.Domain, me: contract.Member, own_id: str,
               networks: dict[str, Any]) -> dict:
    ports_taken = [*registry_rules.ports_served(node=me.name, registries=[networks, *_other_registries(view, domain)]),
                   *view.ports_in_use()]
    return registry_rules.new_network_entry(name=name, domain=domain, server=me, server_id=own_id,
                                            networks=networks, ports_taken=ports_taken)


def _moved_entry(view: PassView, *, domain: contract.Domain, me: contract.Member, entry: dict,
                 networks: dict[str, Any]) -> dict:
    ports_taken = [*registry_rules.ports_served(node=me.name, registries=[networks, *_other_registries(view, domain)]),
                   *view.ports_in_use()]
    port = addressing.allocate_port(port_range=me.port_range, taken=ports_taken)
    return {**entry, "endpoint": f"{me.address}:{port}"}


def _other_domains(view: PassView, domain: contract.Domain, *,
                   node: contract.NodeRef | None = None) -> Iterator[contract.Domain]:
    """The other dtDomains this node (or ``node``) is a member of, listed now."""
    for other in view.cluster.list_domains(node or view.node):
        if other["metadata"]["name"] != domain.name:
            yield view.cluster.domain(other)


def _other_registries(view: PassView, domain: contract.Domain, *,
                      node: contract.Member | None = None) -> Iterator[dict]:
    """The registries of the other dtDomains this node (or the member ``node``) is a member of
    (those whose home is in this inventory): their servers on it listen on its address too."""
    for other in _other_domains(view, domain, node=None if node is None else view.member_node(node)):
        home = view.federation.get(other.home.name)
        if home is not None:
            yield registry_rules.networks_of(view.domain_object(home, other.name))


def _check_name_free(view: PassView, *, name: str, domain: contract.Domain) -> None:
    for other in _other_domains(view, domain):
        if name in registry_rules.networks_of(view.domain_object(view.member_node(other.home), other.name)):
            raise plan.PlanError(Status.NETWORK_NAME_TAKEN, f"network {name!r} already exists in dtDomain "
                                 f"{other.name}; a name is one network in the whole federation")
