"""Reconciling the dtServices of one node against the federation's API servers.

Owns the control-plane steps for each dtService of a node: its key Secret, the network's
registry entry on the domain's home dtDomain, the address claim on the server's ``peers``
table, the dtService's own ``peers`` / ``spec.server`` / ``status`` and its Events. Every
shared table is written with its ``resourceVersion``; a Conflict means another provisioner
got there first, so the step re-reads and runs again. The rules themselves live in ``plan``.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import (
    Cluster,
    Conflict,
    NodeRef,
    SharedObject,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing, keys, plan
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import pods as pod_rules

MAX_ATTEMPTS = 20


@dataclass
class Outcome:
    """What reconciling one dtService did and found. Never holds a private key."""

    name: str
    status: str
    message: str = ""
    role: str | None = None
    address: str | None = None
    subnet: str | None = None
    interface: str | None = None
    pod: str | None = None
    pod_labels: dict[str, str] = field(default_factory=dict)
    changed: bool = False
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("before", "after")}

    def diff(self) -> dict[str, Any]:
        header = f"dtService {self.name}"
        return {"before_header": header, "after_header": header, "before": self.before, "after": self.after}


def owned_fields(service: Mapping[str, Any]) -> dict[str, Any]:
    return {"peers": service.get("peers") or {}, "server": (service.get("spec") or {}).get("server"),
            "status": service.get("status")}


class NodeReconciler:
    """Reconciles the dtServices in one node's namespace; reads are cached for one pass."""

    def __init__(self, *, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef]) -> None:
        self.cluster = cluster
        self.node = node
        self.federation = federation
        self._services: dict[str, list[dict]] = {}
        self._domains: dict[str, dict[str, dict]] = {}

    # -- cached reads ---------------------------------------------------------------------
    def _member_node(self, member: contract.Member) -> NodeRef:
        node = self.federation.get(member.name)
        if node is None:
            raise plan.PlanError(Status.FAILED, f"member {member.name} of the domain has no connection "
                                 "details (not a host of this inventory)")
        return node

    def services_of(self, node: NodeRef) -> list[dict]:
        if node.name not in self._services:
            self._services[node.name] = self.cluster.list_services(node)
        return self._services[node.name]

    def service_on(self, node: NodeRef, name: str) -> dict | None:
        return next((s for s in self.services_of(node) if s["metadata"]["name"] == name), None)

    def _remember(self, node: NodeRef, service: dict) -> None:
        items = self.services_of(node)
        items[:] = [s for s in items if s["metadata"]["name"] != service["metadata"]["name"]] + [service]

    def domain_object(self, node: NodeRef, name: str, *, fresh: bool = False) -> dict | None:
        """A dtDomain of a node, from one LIST of the node's dtDomains per pass (``fresh``
        lists again): a converged pass reads a bounded number of times per node."""
        if fresh or node.name not in self._domains:
            self._domains[node.name] = {d["metadata"]["name"]: d for d in self.cluster.list_domains(node)}
        return self._domains[node.name].get(name)

    # -- the pass -------------------------------------------------------------------------
    def reconcile(self, *, only: set[str] | None = None, finalizer: bool = False) -> list[Outcome]:
        pods = self.cluster.list_pods(self.node)
        secrets = self.cluster.list_secrets(self.node, label_selector=contract.KEY_SECRET_LABEL)
        outcomes = []
        ordered = sorted(self.services_of(self.node),
                         key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]))
        for service in ordered:
            if (only is not None and service["metadata"]["name"] not in only) \
                    or service["metadata"].get("deletionTimestamp"):
                continue
            current = self._with_finalizer(service) if finalizer else service
            outcomes.append(self.reconcile_service(current, pods=pods, secrets=secrets))
        return outcomes

    def _with_finalizer(self, service: dict) -> dict:
        def desired(current: dict) -> dict:
            body = copy.deepcopy(current)
            finalizers = body["metadata"].setdefault("finalizers", [])
            if contract.FINALIZER not in finalizers:
                finalizers.append(contract.FINALIZER)
            return body
        return self._update(self.node, service["metadata"]["name"], desired)

    def reconcile_service(self, service: dict, *, pods: Mapping[str, dict],
                          secrets: Mapping[str, dict]) -> Outcome:
        name = service["metadata"]["name"]
        before = owned_fields(service)
        writes_before = self.cluster.writes
        try:
            outcome = self._attach(service, pods=pods, secrets=secrets)
        except (plan.PlanError, addressing.AllocationError) as problem:
            # A reason the CRD's status enum does not know (an InvalidInput's "Invalid", from a
            # dtDomain whose pool cannot hold its subnet size) would make the status write a 422.
            status = problem.reason if problem.reason in contract.STATES else Status.FAILED
            outcome = Outcome(name=name, status=status, message=str(problem))
        except ApiError as problem:
            # Another member's API server refused or is down: this dtService waits for the next
            # pass, the others of the node go on.
            outcome = Outcome(name=name, status=Status.FAILED, message=f"an API server did not answer as expected: "
                              f"{str(problem)[:300]}")
        current = self.service_on(self.node, name) or service
        self._set_status(current, outcome)
        outcome.before = before
        outcome.after = owned_fields(self.service_on(self.node, name) or current)
        outcome.changed = self.cluster.writes > writes_before
        return outcome

    def _attach(self, service: dict, *, pods: Mapping[str, dict], secrets: Mapping[str, dict]) -> Outcome:
        name = service["metadata"]["name"]
        spec = service["spec"]
        domain_obj = self.domain_object(self.node, spec["domainSelector"])
        if domain_obj is None:
            raise plan.PlanError(Status.DOMAIN_NOT_FOUND, f"dtDomain {spec['domainSelector']!r} does not exist in "
                                 f"namespace {self.node.namespace}")
        domain = contract.Domain.from_object(domain_obj)
        me = domain.member(name=self.node.name, namespace=self.node.namespace)
        if me is None:
            raise plan.PlanError(Status.NOT_A_MEMBER, f"node {self.node.name} ({self.node.namespace}) is not a member "
                                 f"of dtDomain {domain.name}; members: {[m.name for m in domain.members]}")
        public_key = self.ensure_key(service, secrets)
        entry = self._registry_entry(service, domain, me)
        uid = service["metadata"]["uid"]
        if entry["server"]["id"] == contract.peer_id(uid=uid):
            role, address = contract.SERVER, addressing.server_address(subnet=entry["subnet"])
            self._serve(service, domain, entry, public_key)
        else:
            role = contract.CLIENT
            address = self._join(service, domain, entry, public_key)
        pod = pod_rules.select(pods, spec["podSelector"])
        outcome = Outcome(name=name, status=Status.PENDING, role=role, address=address, subnet=entry["subnet"],
                          interface=contract.interface_name(namespace=self.node.namespace, network=name,
                                                             node_netns=self.node.netns),
                          pod=pod["metadata"]["name"] if pod else spec["podSelector"],
                          pod_labels=plan.pod_labels(uid=uid, role=role))
        problem = pod_rules.judge(pod, selector=spec["podSelector"], served_nodes=self.node.served_nodes)
        if problem is not None:
            outcome.status, message = problem
            outcome.message = f"{message}; the interface is added when it runs here (address {address} is reserved)"
        elif service.get("status") == Status.CONNECTED:
            outcome.status = Status.CONNECTED
        return outcome

    # -- keys -----------------------------------------------------------------------------
    def ensure_key(self, service: dict, secrets: Mapping[str, dict]) -> str:
        """The dtService's public key; makes its key Secret when missing or left by an
        earlier object of the same name. The private key goes only into the Secret."""
        return ensure_key_secret(cluster=self.cluster, node=self.node, service=service,
                                 secret=secrets.get(contract.key_secret_name(service["metadata"]["name"])))

    # -- registry -------------------------------------------------------------------------
    def _registry_entry(self, service: dict, domain: contract.Domain, me: contract.Member) -> dict:
        name = service["metadata"]["name"]
        own_id = contract.peer_id(uid=service["metadata"]["uid"])
        home = self._member_node(domain.home)
        fresh = False
        for _ in range(MAX_ATTEMPTS):
            home_obj = self.domain_object(home, domain.name, fresh=fresh)
            if home_obj is None:
                raise plan.PlanError(Status.DOMAIN_NOT_FOUND, f"dtDomain {domain.name!r} is missing on its home "
                                     f"node {domain.home.name} ({domain.home.namespace})")
            networks = dict((home_obj.get("status") or {}).get("networks") or {})
            entry = networks.get(name)
            server = (entry or {}).get("server", {})
            if entry and server.get("id") == own_id:
                return entry
            if entry and (server.get("namespace"), server.get("name")) == (self.node.namespace, name):
                # The server's dtService was deleted and made again here: it stays the server.
                networks[name] = {**entry, "server": {**server, "id": own_id}}
            elif entry:
                hub = self.service_on(self._member_node(domain.member(name=server["node"]) or domain.home), name)
                if hub is not None and contract.peer_id(uid=hub["metadata"]["uid"]) == server["id"]:
                    return entry
                # The server's dtService is gone: the network ends and the next pod starts it anew.
                del networks[name]
                networks.update(self._new_network(name, domain, me, own_id, networks))
            else:
                self._check_name_free(name, domain)
                networks.update(self._new_network(name, domain, me, own_id, networks))
            body = copy.deepcopy(home_obj)
            body.setdefault("status", {})["networks"] = networks
            try:
                self._domains[home.name][domain.name] = self.cluster.replace_domain_status(home, body)
                return networks[name]
            except Conflict:
                fresh = True
        raise plan.PlanError(Status.FAILED, f"the registry of dtDomain {domain.name} kept changing; gave up after "
                             f"{MAX_ATTEMPTS} attempts")

    def _new_network(self, name: str, domain: contract.Domain, me: contract.Member, own_id: str,
                     networks: Mapping[str, Any]) -> dict:
        subnet = addressing.allocate_subnet(pool=domain.pool, prefix=domain.subnet_prefix,
                                            taken=[n["subnet"] for n in networks.values()])
        port = addressing.allocate_port(port_range=me.port_range, taken=self._ports_served(me, domain, networks))
        return {name: {"subnet": subnet, "endpoint": f"{me.address}:{port}",
                       "server": {"node": me.name, "namespace": me.namespace, "name": name, "id": own_id}}}

    def _ports_served(self, me: contract.Member, domain: contract.Domain, networks: Mapping[str, Any]) -> list[int]:
        """The UDP ports of every network this node serves: those of this domain's registry and
        those of the other domains it is a member of, since all of them listen on its address."""
        registries = [networks]
        for other in self.cluster.list_domains(self.node):
            if other["metadata"]["name"] == domain.name:
                continue
            other_domain = contract.Domain.from_object(other)
            home = self.federation.get(other_domain.home.name)
            if home is not None:
                home_obj = self.domain_object(home, other_domain.name) or {}
                registries.append((home_obj.get("status") or {}).get("networks") or {})
        return [int(n["endpoint"].rsplit(":", 1)[1]) for registry in registries for n in registry.values()
                if n["server"]["node"] == me.name]

    def _check_name_free(self, name: str, domain: contract.Domain) -> None:
        for other in self.cluster.list_domains(self.node):
            if other["metadata"]["name"] == domain.name:
                continue
            other_domain = contract.Domain.from_object(other)
            home_obj = self.domain_object(self._member_node(other_domain.home), other_domain.name)
            if name in ((home_obj or {}).get("status") or {}).get("networks", {}):
                raise plan.PlanError(Status.NETWORK_NAME_TAKEN, f"network {name!r} already exists in dtDomain "
                                     f"{other_domain.name}; a name is one network in the whole federation")

    # -- server and clients ---------------------------------------------------------------
    def _live_clients(self, name: str, domain: contract.Domain) -> list[dict]:
        clients = []
        for member in domain.members:
            if member.name == self.node.name:
                continue
            other = self.service_on(self._member_node(member), name)
            if other and other["spec"].get("domainSelector") == domain.name \
                    and not other["metadata"].get("deletionTimestamp"):
                clients.append(other)
        return clients

    def _serve(self, service: dict, domain: contract.Domain, entry: dict, public_key: str) -> None:
        def desired(current: dict) -> dict:
            body = copy.deepcopy(current)
            body["peers"] = plan.server_table(subnet=entry["subnet"], server_uid=current["metadata"]["uid"],
                                              server_key=public_key, current=current.get("peers") or {},
                                              live_clients=self._live_clients(current["metadata"]["name"], domain))
            body["spec"].pop("server", None)
            return body
        shared = self.cluster.shared_service(self.node, service["metadata"]["name"])
        with shared.lock:
            self._update(self.node, service["metadata"]["name"], desired, shared=shared)

    def _join(self, service: dict, domain: contract.Domain, entry: dict, public_key: str) -> str:
        name = service["metadata"]["name"]
        uid = service["metadata"]["uid"]
        own_id = contract.peer_id(uid=uid)
        hub_node = self._member_node(domain.member(name=entry["server"]["node"]) or domain.home)
        recorded = plan.self_entry(service)
        claimed: dict[str, str] = {}
        hub_address = addressing.server_address(subnet=entry["subnet"])
        cached = self.service_on(hub_node, name)
        if cached is not None and hub_address not in (cached.get("peers") or {}):
            self._services.pop(hub_node.name, None)  # read before the server listed itself: read again

        def claim(hub: dict) -> dict:
            table = hub.get("peers") or {}
            if hub_address not in table:
                # The server registered the network but has not written its own entry yet (it
                # is being reconciled right now): joining needs its key, so wait for next pass.
                raise plan.PlanError(Status.PENDING, f"the server of network {name} on node {entry['server']['node']} "
                                     "has not set the network up yet; this pod joins on the next pass")
            owners = {address: plan.id_of(e) for address, e in table.items()}
            address = addressing.claim_address(subnet=entry["subnet"], peers=owners, peer_key=own_id,
                                               preferred=recorded[0] if recorded else None)
            claimed["address"] = address
            body = copy.deepcopy(hub)
            body.setdefault("peers", {})
            body["peers"] = {a: e for a, e in body["peers"].items() if plan.id_of(e) != own_id or a == address}
            body["peers"][address] = plan.peer_entry(uid=uid, role=contract.CLIENT, public_key=public_key)
            return body
        shared = self.cluster.shared_service(hub_node, name)
        with shared.lock:
            hub = self._update(hub_node, name, claim, shared=shared)
        address = claimed["address"]

        def own(current: dict) -> dict:
            body = copy.deepcopy(current)
            body["peers"], body["spec"]["server"] = plan.client_fields(
                hub_table=hub["peers"], subnet=entry["subnet"], endpoint=entry["endpoint"], own_address=address)
            return body
        self._update(self.node, name, own)
        return address

    def _update(self, node: NodeRef, name: str, desired: Callable[[dict], dict],
                shared: SharedObject | None = None) -> dict:
        """Write ``desired(current)`` when it differs, re-reading on Conflict. With ``shared``
        (its lock held), start from the newest copy another thread wrote or read."""
        # Check mode writes nothing: a dry run's answer is no copy to build on.
        shared = None if self.cluster.dry_run else shared
        current = (shared.latest if shared else None) or self.service_on(node, name)
        for _ in range(MAX_ATTEMPTS):
            if current is None:
                raise plan.PlanError(Status.SERVER_UNREACHABLE, f"dtService {name} is missing on node {node.name}")
            body = desired(current)
            if body == current:
                return current
            try:
                current = self.cluster.replace_service(node, body)
                self._remember(node, current)
                return current
            except Conflict:
                # Re-read this object first, then (lazily) everything else: a client that
                # claimed an address in it is then also seen as live.
                self._services.clear()
                current = self.cluster.get_service(node, name)
            finally:
                if shared:
                    shared.latest = current
        raise plan.PlanError(Status.FAILED, f"dtService {name} on {node.name} kept changing; gave up after "
                             f"{MAX_ATTEMPTS} attempts")

    # -- status ---------------------------------------------------------------------------
    def _set_status(self, service: dict, outcome: Outcome) -> None:
        written = write_status(cluster=self.cluster, node=self.node, service=service,
                               status=outcome.status, message=outcome.message)
        if written is not None:
            self._remember(self.node, written)


def write_status(*, cluster: Cluster, node: NodeRef, service: dict, status: str, message: str) -> dict | None:
    """Set the dtService's status word (and an Event saying why, off the happy path) when it
    changes; returns the written object, or None when nothing was written."""
    if service.get("status") == status:
        return None
    body = copy.deepcopy(service)
    body["status"] = status
    try:
        written = cluster.replace_service_status(node, body)
    except Conflict:
        return None  # the object moved on under us; the next pass writes it
    # The seed's happy path shows `Events: <none>`: only states a user must act on or wait for get one.
    if status not in contract.QUIET:
        cluster.record_event(node, service=service, reason=status, message=message or status,
                             warning=status not in contract.WAITING)
    return written


def ensure_key_secret(*, cluster: Cluster, node: NodeRef, service: Mapping[str, Any],
                      secret: Mapping[str, Any] | None) -> str:
    """Return the public key of the dtService's key Secret, making the Secret when it is
    missing, unreadable or owned by an earlier object of the same name."""
    meta = service["metadata"]
    if secret is not None:
        owners = [ref.get("uid") for ref in secret["metadata"].get("ownerReferences") or []]
        private = base64.b64decode((secret.get("data") or {}).get(contract.PRIVATE_KEY_FIELD, "")).decode()
        if meta["uid"] in owners and keys.is_valid_key(private):
            return keys.public_key_of(private)
        cluster.delete_secret(node, secret["metadata"]["name"])
    private = keys.generate_private_key()
    public = keys.public_key_of(private)
    body = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": contract.key_secret_name(meta["name"]), "namespace": node.namespace,
            "labels": {**contract.MANAGED_BY, contract.KEY_SECRET_LABEL: meta["name"]},
            "annotations": {contract.PUBLIC_KEY_ANNOTATION: public},
            "ownerReferences": [{"apiVersion": contract.API_VERSION, "kind": contract.SERVICE_KIND,
                                 "name": meta["name"], "uid": meta["uid"]}],
        },
        "data": {contract.PRIVATE_KEY_FIELD: base64.b64encode(private.encode()).decode()},
    }
    try:
        cluster.create_secret(node, body)
    except Conflict:
        # Another provisioner (the daemon beside a deploy) made it a moment ago: keep theirs.
        theirs = cluster.list_secrets(node, label_selector=f"{contract.KEY_SECRET_LABEL}={meta['name']}").get(
            contract.key_secret_name(meta["name"]))
        if theirs is None or meta["uid"] not in [r.get("uid") for r in theirs["metadata"].get("ownerReferences") or []]:
            raise
        return ensure_key_secret(cluster=cluster, node=node, service=service, secret=theirs)
    return public
