"""The federation plan: what every provisioner-owned field should hold. Pure, no I/O.

Owns the rules of the seed's objects: which peer is the server, what a server's ``peers``
table holds after clients come and go and what a client's claim on it leaves there, what a
client's ``peers`` and ``spec.server`` hold, which labels a pod carries, and the declared
plan the lookup plugin returns to playbooks. Addresses and ports come from ``addressing``,
registry entries from ``registry``; reading and writing the tables is ``control/claims.py``'s.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    CLIENT,
    LABEL_PREFIX,
    SERVER,
    Status,
    peer_id,
    peer_label_key,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.addressing import (
    claim_address,
    is_client_address,
    server_address,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import is_valid_key


class PlanError(ValueError):
    """Declared input that cannot be planned; ``reason`` is the dtService status word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def role_of(entry: Mapping[str, Any]) -> str | None:
    """The role a ``peers`` entry carries in its one ``sid.sightline.dtservice.<id>`` label."""
    for key, value in (entry.get("labels") or {}).items():
        if key.startswith(LABEL_PREFIX):
            return value
    return None


def id_of(entry: Mapping[str, Any]) -> str | None:
    for key in (entry.get("labels") or {}):
        if key.startswith(LABEL_PREFIX):
            return key[len(LABEL_PREFIX):]
    return None


def peer_entry(*, uid: str, role: str, public_key: str) -> dict[str, Any]:
    return {"labels": {peer_label_key(uid=uid): role}, "publicKey": public_key}


def self_entry(service: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The (address, entry) a dtService records for itself in its own ``peers``."""
    own = peer_id(uid=service["metadata"]["uid"])
    for address, entry in (service.get("peers") or {}).items():
        if id_of(entry) == own:
            return address, entry
    return None


def server_table(*, subnet: str, server_uid: str, server_key: str, current: Mapping[str, Any],
                 live_clients: Iterable[Mapping[str, Any]], keep_unseen: bool = False,
                 hub_address: str | None = None) -> dict[str, Any]:
    """The server's ``peers`` after reconciling: the server at ``hub_address`` (``.1`` unless
    a failover made a client the hub at its own address); every live client at
    the address the table gives it, else at the address it recorded for itself when that is
    free (repairs a hand-edited table); entries of departed clients are dropped (freed).

    What a client recorded is its owner's to edit, so it is checked before it is taken: an
    address must be a client address of the subnet, and a key a WireGuard key no other peer
    of the table uses (two peers with one key would make the hub refuse its whole update).
    A client's changed key that fails this keeps the key the table held. With ``keep_unseen``
    (some member did not answer), the entries of clients not seen are kept as they are."""
    table = {hub_address or server_address(subnet=subnet): peer_entry(uid=server_uid, role=SERVER,
                                                                      public_key=server_key)}
    clients = {peer_id(uid=c["metadata"]["uid"]): c for c in live_clients}

    def key_free(key: Any) -> bool:
        return isinstance(key, str) and is_valid_key(key) and all(e["publicKey"] != key for e in table.values())

    for address, entry in sorted(current.items()):
        owner = id_of(entry)
        if role_of(entry) != CLIENT or not is_client_address(address=address, subnet=subnet) or address in table:
            continue
        if owner not in clients:
            if keep_unseen and key_free(entry.get("publicKey")):
                table[address] = {"labels": dict(entry["labels"]), "publicKey": entry["publicKey"]}
            continue
        recorded = self_entry(clients[owner])
        key = recorded[1].get("publicKey") if recorded else None
        key = key if key_free(key) else entry.get("publicKey")
        if key_free(key):
            table[address] = {"labels": dict(entry["labels"]), "publicKey": key}
    placed = {id_of(entry) for entry in table.values()}
    for owner, client in sorted(clients.items()):
        recorded = self_entry(client)
        if owner in placed or recorded is None:
            continue
        address, entry = recorded
        if address not in table and is_client_address(address=address, subnet=subnet) \
                and key_free(entry.get("publicKey")) and role_of(entry) == CLIENT:
            table[address] = {"labels": {peer_label_key(uid=client["metadata"]["uid"]): CLIENT},
                              "publicKey": entry["publicKey"]}
    return table


@dataclass(frozen=True)
class TableIndex:
    """A server's ``peers`` by peer id and by public key: the addresses of each, in the table's order."""

    by_id: Mapping[str | None, list[str]]
    by_key: Mapping[str | None, list[str]]


def table_index(table: Mapping[str, Any]) -> TableIndex:
    by_id: dict[str | None, list[str]] = {}
    by_key: dict[str | None, list[str]] = {}
    for at, entry in table.items():
        by_id.setdefault(id_of(entry), []).append(at)
        by_key.setdefault(entry.get("publicKey"), []).append(at)
    return TableIndex(by_id=by_id, by_key=by_key)


def claim_in_table(*, table: Mapping[str, Any], subnet: str, uid: str, public_key: str,
                   preferred: str | None = None, index: TableIndex | None = None) -> tuple[str, dict[str, Any]]:
    """A client's claim on its server's ``peers``: the address it gets (``claim_address``'s
    rule, ``preferred`` being the one it recorded for itself) and the table holding it there
    with ``public_key``, under no other address. ``index``: ``table_index(table)``, when the
    caller keeps it for the claims of many clients on the same table (each read the whole
    table before, 10,000 entries for 100 clients)."""
    index = index or table_index(table)
    own_id = peer_id(uid=uid)
    owned = index.by_id.get(own_id, [])
    if any(at not in owned for at in index.by_key.get(public_key, [])):
        raise PlanError(Status.FAILED, "this dtService's public key is already used by another peer of the network")
    mine = peer_entry(uid=uid, role=CLIENT, public_key=public_key)
    if len(owned) == 1 and table[owned[0]] == mine and is_client_address(address=owned[0], subnet=subnet):
        # Its claim as it stands (claim_address's first rule), found without parsing every
        # address of the table: 100 clients of one hub each parsed all 100 in every pass.
        return owned[0], dict(table)
    address = claim_address(subnet=subnet, peers={a: id_of(e) or "" for a, e in table.items()}, peer_key=own_id,
                            preferred=preferred)
    claimed = {a: e for a, e in table.items() if id_of(e) != own_id or a == address}
    claimed[address] = mine
    return address, claimed


def address_in_table(*, table: Mapping[str, Any], uid: str) -> str | None:
    """The address the hub's table gives the peer of ``uid``; None before it has claimed one."""
    own_id = peer_id(uid=uid)
    return next((address for address, entry in sorted(table.items()) if id_of(entry) == own_id), None)


def hub_peers(*, table: Mapping[str, Any], subnet: str, hub_key: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The (address, public key) of each client a hub's interface should know, from its table,
    and the addresses left out: a hub's ``peers`` is its owner's to edit, so only client
    addresses of the subnet with a WireGuard key of their own reach the interface."""
    peers, refused, seen = [], [], {hub_key}
    for address, entry in sorted(table.items()):
        key = entry.get("publicKey")
        if role_of(entry) == SERVER and key == hub_key:
            continue  # the hub itself, at .1 or (after a failover) at the address it had as a client
        if role_of(entry) == CLIENT and is_client_address(address=address, subnet=subnet) \
                and isinstance(key, str) and is_valid_key(key) and key not in seen:
            peers.append((address, key))
            seen.add(key)
        else:
            refused.append(address)
    return peers, refused


def client_fields(*, hub_table: Mapping[str, Any], subnet: str, endpoint: str, own_address: str,
                  hub_address: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A client's ``peers`` (the server and itself, as the seed shows) and ``spec.server``;
    the server is at ``hub_address`` (default ``.1``)."""
    hub_address = hub_address or server_address(subnet=subnet)
    hub = hub_table[hub_address]
    peers = {hub_address: dict(hub), own_address: dict(hub_table[own_address])}
    return peers, {"endpoint": endpoint, "peer": subnet, "publicKey": hub["publicKey"]}


def successor(*, candidates: Iterable[Mapping[str, Any]], subnet: str,
              table: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str] | None:
    """The client that becomes the hub when the hub is gone, with its address and public key:
    of the ``candidates`` (the network's live clients), a Connected one before the others (its
    pod has a working interface), then the lowest address. The address and key are the ones
    the old hub's ``table`` gives the client; what a client recorded for itself (its owner's
    to edit) counts only when the table is lost or does not list it, and never an address the
    table gives another peer. Every provisioner that looks picks the same one, so racing
    failovers agree."""
    eligible = []
    for candidate in candidates:
        listed = address_in_table(table=table, uid=candidate["metadata"]["uid"])
        if listed is not None:
            address, entry = listed, table[listed]
        else:
            recorded = self_entry(candidate)
            if recorded is None or recorded[0] in table:
                continue
            address, entry = recorded
        key = entry.get("publicKey")
        if role_of(entry) == CLIENT and is_client_address(address=address, subnet=subnet) \
                and isinstance(key, str) and is_valid_key(key):
            rank = (candidate.get("status") != Status.CONNECTED, int(ipaddress.IPv4Address(address)))
            eligible.append((rank, candidate, address, key))
    if not eligible:
        return None
    _rank, chosen, address, key = min(eligible, key=lambda item: item[0])
    return chosen, address, key


def pod_labels(*, uid: str, role: str) -> dict[str, str]:
    return {peer_label_key(uid=uid): role}


# -- the declared plan (lookup plugin) ------------------------------------------------------

@dataclass
class DeclaredNetwork:
    name: str
    domain: str
    attachments: list[dict[str, str]] = field(default_factory=list)

    @property
    def server_node(self) -> str:
        return self.attachments[0]["node"]


def declared_plan(*, domains: Iterable[Mapping[str, Any]], nodes: Mapping[str, Mapping[str, Any]],
                  services: Mapping[str, Iterable[Mapping[str, Any]]],
                  node_order: Iterable[str]) -> dict[str, Any]:
    """Check the inventory's declarations and order them: one network per name, its server
    the first node (in inventory order) that attaches a pod, every attachment on a member.
    Raises PlanError for what the API server or the reconciler would refuse anyway, so a
    playbook fails before it changes anything."""
    by_name = {}
    for domain in domains:
        if domain["name"] in by_name:
            raise PlanError(Status.FAILED, f"dtDomain {domain['name']!r} is declared twice")
        repeated = sorted(member for member, times in Counter(domain["members"]).items() if times > 1)
        if repeated:
            raise PlanError(Status.FAILED, f"dtDomain {domain['name']!r} lists members more than once: {repeated}")
        unknown = [m for m in domain["members"] if m not in nodes]
        if unknown:
            raise PlanError(Status.FAILED, f"dtDomain {domain['name']!r} lists members that are not "
                            f"inventory hosts: {unknown}")
        by_name[domain["name"]] = domain
    networks: dict[str, DeclaredNetwork] = {}
    for node in node_order:
        for service in services.get(node, []):
            name, domain = service["name"], service["domain"]
            if domain not in by_name:
                raise PlanError(Status.DOMAIN_NOT_FOUND, f"{node}: dtService {name!r} names dtDomain {domain!r}, "
                                f"which is not declared (declared: {sorted(by_name)})")
            if node not in by_name[domain]["members"]:
                raise PlanError(Status.NOT_A_MEMBER, f"{node}: dtService {name!r}: node {node} is not a member "
                                f"of dtDomain {domain!r} (members: {by_name[domain]['members']})")
            network = networks.setdefault(name, DeclaredNetwork(name=name, domain=domain))
            if network.domain != domain:
                raise PlanError(Status.NETWORK_NAME_TAKEN, f"{node}: network {name!r} already belongs to dtDomain "
                                f"{network.domain!r}; a name is one network in the whole federation")
            if any(a["node"] == node for a in network.attachments):
                raise PlanError(Status.FAILED, f"{node}: network {name!r} is attached twice on this node")
            network.attachments.append({"node": node, "pod": service["pod"]})

    def interface_of(node: Mapping[str, Any], network: str) -> str:
        return contract.interface_name(namespace=node["namespace"], network=network, node_netns=node.get("netns"))

    return {
        "networks": {n.name: {"domain": n.domain, "server_node": n.server_node,
                              "attachments": n.attachments,
                              "interfaces": {a["node"]: interface_of(nodes[a["node"]], n.name)
                                             for a in n.attachments}}
                     for n in networks.values()},
        "serves": {node: sorted(n.name for n in networks.values() if n.server_node == node)
                   for node in node_order},
    }


def label_changes(*, pods: Mapping[str, Mapping[str, Any]],
                  wanted: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str | None]]:
    """Per pod, the label patch (None removes) that makes its dtService labels ``wanted``."""
    changes = {}
    for name, pod in pods.items():
        have = {k: v for k, v in (pod["metadata"].get("labels") or {}).items() if k.startswith(LABEL_PREFIX)}
        want = dict(wanted.get(name) or {})
        patch: dict[str, str | None] = {k: None for k in have if k not in want}
        patch.update({k: v for k, v in want.items() if have.get(k) != v})
        if patch:
            changes[name] = patch
    return changes


# -- rendering the user-side objects ---------------------------------------------------------

def domain_object(*, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": contract.API_VERSION, "kind": contract.DOMAIN_KIND,
            "metadata": {"name": name}, "spec": dict(spec)}


def member_copy(spec: Mapping[str, Any], *, member: str) -> Mapping[str, Any]:
    """The spec of ``member``'s copy of a dtDomain: home's copy whole; any other member's
    with home and that member as its only members (settings as home's)."""
    home, *others = spec["members"]
    if home["name"] == member:
        return spec
    return {**spec, "members": [home, *(m for m in others if m["name"] == member)]}


def service_object(*, name: str, domain: str, pod: str) -> dict[str, Any]:
    """A dtService as a user writes it (the seed's YAML): only the user's fields."""
    return {"apiVersion": contract.API_VERSION, "kind": contract.SERVICE_KIND,
            "metadata": {"name": name}, "spec": {"domainSelector": domain, "podSelector": pod}}


def pods_labels(outcomes: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Pod name -> every dtService label it should carry, from the NodeReconciler's outcomes."""
    labels: dict[str, dict[str, str]] = {}
    for outcome in outcomes:
        if outcome.get("pod") and outcome.get("pod_labels"):
            labels.setdefault(outcome["pod"], {}).update(outcome["pod_labels"])
    return labels


def _place(manifests: dict[tuple, dict[str, Any]], node: Mapping[str, Any], obj: dict[str, Any]) -> None:
    """``obj`` in the node's namespace, in its cluster's entry of ``manifests`` (one
    dtservice_manifest ``clusters`` entry per API server)."""
    obj["metadata"]["namespace"] = node["namespace"]
    manifests.setdefault((node["kubeconfig"], node["context"]), {
        "kubeconfig": node["kubeconfig"], "context": node["context"], "objects": []})["objects"].append(obj)


def federation_plan(*, hosts: list[str], nodes: Mapping[str, Mapping[str, Any]],
                    services: Mapping[str, list[Mapping[str, Any]]], domains: list[Mapping[str, Any]],
                    machines: Mapping[str, str], limit: list[str] | None = None) -> dict[str, Any]:
    """Everything deploy.yml needs, batched: per cluster the objects to apply in one call, per
    machine the hosts of the nodes one agent run serves, and the declared plan. ``nodes`` and ``services``
    are keyed by inventory host, ``machines`` maps a host to the machine its agent runs on;
    ``limit`` (the hosts of a limited run) restricts the agents to those hosts."""
    declared = declared_plan(domains=domains, nodes=nodes, services=services, node_order=hosts)
    specs = {d["name"]: contract.Domain(
        name=d["name"],
        members=tuple(contract.Member(name=nodes[m]["name"], namespace=nodes[m]["namespace"],
                                      address=nodes[m]["address"], port_range=nodes[m]["port_range"])
                      for m in d["members"]),
        **{key: d[key] for key in contract.DOMAIN_SPEC_FIELDS if d.get(key) is not None}).to_spec() for d in domains}
    # Each member's namespace holds a copy of its dtDomain. The home copy lists every member
    # (it is the authority: control/reconciler.py); every other copy lists home and its own
    # member only, so the copies grow with the members, not with their square (100 copies of
    # a 100-member domain were 1.08 MB in each LIST), a new member adds two writes, not one
    # per member, and a tenant's namespace shows no other member's address.
    domain_manifests: dict[tuple, dict[str, Any]] = {}
    service_manifests: dict[tuple, dict[str, Any]] = {}
    for host in hosts:
        node = nodes[host]
        for domain in domains:
            if host in domain["members"]:
                _place(domain_manifests, node, domain_object(
                    name=domain["name"], spec=member_copy(specs[domain["name"]], member=node["name"])))
        for service in services[host]:
            _place(service_manifests, node,
                   service_object(name=service["name"], domain=service["domain"], pod=service["pod"]))
    # Hosts, not nodes: every node is in ``nodes`` once, and Ansible walks the whole plan at
    # each task that takes it (7,000 values at 100 nodes, a fifth of them these).
    agents: dict[str, list[str]] = {}
    first_of_machine: dict[str, str] = {}
    for host in hosts if limit is None else [h for h in hosts if h in limit]:
        runner = first_of_machine.setdefault(machines[host], host)
        agents.setdefault(runner, []).append(host)
    return {"nodes": dict(nodes), "federation": [nodes[h] for h in hosts], "domains": specs,
            "manifests": {"domains": list(domain_manifests.values()), "services": list(service_manifests.values())},
            "agents": agents, "networks": declared["networks"],
            "serves": {nodes[h]["name"]: declared["serves"][h] for h in hosts if declared["serves"][h]}}


def machine_arguments(computed: Mapping[str, Any], *, agent: str) -> dict[str, Any]:
    """The ``nodes``, ``federation`` and ``serves`` of the pass (dtservice_node) of the machine
    whose agent host is ``agent``, from a ``federation_plan``. Its nodes are part of the
    federation as given; when they are all of it (one machine), ``federation`` is left empty,
    so the hundred node entries are not checked a second time. Raises ``KeyError`` for a host
    that runs no machine's pass."""
    hosts = computed["agents"][agent]
    nodes = [computed["nodes"][host] for host in hosts]
    return {"nodes": nodes, "federation": [] if len(nodes) == len(computed["nodes"]) else computed["federation"],
            "serves": computed["serves"]}
