"""The control plane's pass over one node's dtServices: ``NodeReconciler``.

Owns the order of the steps for each dtService of a node and what it reports (``Outcome``):
the teardown finalizer, the domain and membership checks, the key Secret
(``secrets``), the network's registry entry (``registry``), serving the network or joining
it (``claims``), the labels its pod should carry and whether the pod can be attached here,
then the status word and its Event (``status``); for a hub whose pod is gone, the time its
network is handed to a client (``registry``). A step that cannot go on ends that
dtService's turn with a status; the node's other dtServices go on. The reads of other
nodes' objects are shared, one pass long (``view``).
"""

from __future__ import annotations

import copy
import datetime
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.control import claims, registry
from ansible_collections.sightline.dtservice.plugins.module_utils.control.secrets import (
    ensure_key_secret,
    next_private_key,
    stage_next_key,
    usable,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.control.status import (
    describe,
    try_write_status,
    write_status,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.control.view import PassView
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, NodeRef, RightsRefused
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing, plan, rotation
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import pods as pod_rules
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import registry as registry_rules

RECHECK_SLACK_SECONDS = 0.2


@dataclass
class Outcome:
    """What provisioning one dtService did and found. Never holds a private key."""

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
    # A hub whose pod is gone: seconds until its network is handed to a client, for the
    # daemon to run the network's nodes again then (no event would announce it).
    recheck_in: float | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("before", "after")}

    def diff(self) -> dict[str, Any]:
        header = f"dtService {self.name}"
        return {"before_header": header, "after_header": header, "before": self.before, "after": self.after}


def left_to_agent(outcome: Outcome) -> bool:
    """Whether a reconcile whose interfaces follow in the same pass (``interfaces_follow``)
    leaves the outcome's status for the pass's agent to write: a Pending one."""
    return outcome.status == Status.PENDING


def owned_fields(service: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a dtService the provisioner writes (the module's diff)."""
    return {"peers": service.get("peers") or {}, "server": (service.get("spec") or {}).get("server"),
            "status": service.get("status")}


class NodeReconciler:
    """Provisions the dtServices in one node's namespace; reads are shared for one pass."""

    def __init__(self, *, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef],
                 ports_in_use: Callable[[], Collection[int]] | None = None,
                 key_max_age: float | None = None, interfaces_follow: bool = False) -> None:
        self.cluster = cluster
        self.node = node
        self.federation = federation
        self.key_max_age = key_max_age
        # The same pass configures the node's interfaces next (machine_pass): a Pending status
        # is left to it, which writes what comes of it instead (Connected, as a rule), so a
        # new dtService costs one status write, not two (99 fewer at a first deploy of 100).
        self.interfaces_follow = interfaces_follow
        self.view = PassView(cluster=cluster, node=node, federation=federation, ports_in_use=ports_in_use)

    def provision(self, *, only: set[str] | None = None, rotate_key: str | None = None,
                  rotate_only: Collection[str] | None = None) -> list[Outcome]:
        """Provision the node's dtServices (``only`` these, when given), oldest first, each
        with the teardown finalizer; those being deleted are left to the teardown.
        ``rotate_key`` asks for a new key pair (the value of ``contract.ROTATE_KEY_ANNOTATION``)
        for the dtServices named in ``rotate_only`` (all, when None)."""
        pods = self.cluster.list_pods(self.node)
        secrets = self.cluster.key_secrets(self.node)
        outcomes = []
        ordered = sorted(self.view.services_of(self.node),
                         key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]))
        for service in ordered:
            if (only is not None and service["metadata"]["name"] not in only) \
                    or service["metadata"].get("deletionTimestamp"):
                continue
            try:
                current = self._with_finalizer(service)
                if rotate_key and (rotate_only is None or current["metadata"]["name"] in rotate_only):
                    current = self._with_request(current, rotate_key)
                outcomes.append(self.provision_service(current, pods=pods, secrets=secrets))
            except Exception as problem:  # noqa: BLE001 - contained: it stays with this dtService
                if self._refused_here(problem):
                    raise
                outcome = Outcome(name=service["metadata"]["name"], status=Status.FAILED, message=describe(problem))
                try_write_status(cluster=self.cluster, node=self.node, service=service, status=outcome.status,
                                 message=outcome.message)
                outcomes.append(outcome)
        return outcomes

    def _with_finalizer(self, service: dict) -> dict:
        def desired(current: dict) -> dict:
            finalizers = current["metadata"].get("finalizers") or []
            if contract.FINALIZER in finalizers:
                return current
            return {**current, "metadata": {**current["metadata"], "finalizers": [*finalizers, contract.FINALIZER]}}
        return self.view.update_service(self.node, service["metadata"]["name"], desired)

    def _with_request(self, service: dict, value: str) -> dict:
        def desired(current: dict) -> dict:
            body = copy.deepcopy(current)
            body["metadata"].setdefault("annotations", {})[contract.ROTATE_KEY_ANNOTATION] = value
            return body
        return self.view.update_service(self.node, service["metadata"]["name"], desired)

    def _stage_rotation(self, service: dict, *, secret: Mapping[str, Any] | None) -> None:
        """A next key staged in the key Secret when a rotation is due and none is under way;
        the agent puts it to use, then commits it. Until then the current key is the one
        published in the tables, so no peer learns a key its owner does not use yet."""
        if secret is None or not usable(secret, uid=service["metadata"]["uid"]) or next_private_key(secret):
            return  # a Secret made in this pass holds a new key already
        reason = rotation.reason_to_rotate(service=service, created=rotation.key_created(secret),
                                           now=datetime.datetime.now(datetime.UTC), max_age=self.key_max_age)
        if reason is not None:
            stage_next_key(cluster=self.cluster, node=self.node, secret=secret, reason=reason)

    def provision_service(self, service: dict, *, pods: Mapping[str, dict],
                          secrets: Mapping[str, dict]) -> Outcome:
        """One dtService's steps and its status; the outcome says what changed."""
        name = service["metadata"]["name"]
        before = owned_fields(service)
        writes_before = self.cluster.writes
        try:
            outcome = self._place_in_network(service, pods=pods, secrets=secrets)
        except (plan.PlanError, addressing.AllocationError) as problem:
            # The reasons are status words; one the CRD's enum did not know would make the
            # status write a 422.
            status = problem.reason if problem.reason in contract.STATES else Status.FAILED
            outcome = Outcome(name=name, status=status, message=str(problem))
        except Exception as problem:  # noqa: BLE001 - contained: it stays with this dtService
            if self._refused_here(problem):
                raise
            # Another member's API server refused or is down, or this object holds what no rule
            # foresaw: this dtService waits for the next pass, the others of the node go on.
            outcome = Outcome(name=name, status=Status.FAILED, message=describe(problem))
        current = self.view.service_on(self.node, name) or service
        written = None if self.interfaces_follow and left_to_agent(outcome) else write_status(
            cluster=self.cluster, node=self.node, service=current, status=outcome.status, message=outcome.message)
        if written is not None:
            self.view.remember(self.node, written)
        outcome.before = before
        outcome.after = owned_fields(self.view.service_on(self.node, name) or current)
        outcome.changed = self.cluster.writes > writes_before
        return outcome

    def _refused_here(self, problem: Exception) -> bool:
        """The node's own namespace refused a write for want of rights: the whole node fails
        (reported in node_errors, retried by the daemon), not one dtService (whose status could
        not be written either)."""
        return isinstance(problem, RightsRefused) and problem.namespace == self.node.namespace

    def _home_domain(self, local: contract.Domain) -> contract.Domain:
        """The domain as its home copy says: the authority on members and settings. The copy
        in this node's namespace only says where home is, and must agree with it."""
        home_obj = self.view.domain_object(self.view.member_node(local.home), local.name)
        if home_obj is None:
            raise plan.PlanError(Status.DOMAIN_NOT_FOUND, f"dtDomain {local.name!r} is missing on its home node "
                                 f"{local.home.name} ({local.home.namespace})")
        domain = self.cluster.domain(home_obj)
        if domain.home != local.home:
            raise plan.PlanError(Status.FAILED, f"the copy of dtDomain {local.name!r} in {self.node.namespace} names "
                                 f"home {local.home.name}, whose copy names {domain.home.name}")
        return domain

    def _place_in_network(self, service: dict, *, pods: Mapping[str, dict],
                          secrets: Mapping[str, dict], handed_over: bool = False) -> Outcome:
        """Check the domain, register the network, serve or join it; judge the pod. A hub
        whose pod has been gone past the grace hands its network over and joins it."""
        name = service["metadata"]["name"]
        spec = service["spec"]
        domain_obj = self.view.domain_object(self.node, spec["domainSelector"])
        if domain_obj is None:
            raise plan.PlanError(Status.DOMAIN_NOT_FOUND, f"dtDomain {spec['domainSelector']!r} does not exist in "
                                 f"namespace {self.node.namespace}")
        # A copy that leaves this node out is believed (it only refuses); one that lets it in
        # is checked against the home copy, the authority on members and settings.
        local = self.cluster.domain(domain_obj)
        me = local.member(name=self.node.name, namespace=self.node.namespace)
        domain = local if me is None else self._home_domain(local)
        me = domain.member(name=self.node.name, namespace=self.node.namespace)
        if me is None:
            raise plan.PlanError(Status.NOT_A_MEMBER, f"node {self.node.name} ({self.node.namespace}) is not a member "
                                 f"of dtDomain {domain.name}; members: {[m.name for m in domain.members]}")
        public_key = ensure_key_secret(cluster=self.cluster, node=self.node, service=service,
                                       secret=secrets.get(name))
        self._stage_rotation(service, secret=secrets.get(name))
        entry = registry.register_network(self.view, service=service, domain=domain, me=me)
        uid = service["metadata"]["uid"]
        if entry["server"]["id"] == contract.peer_id(uid=uid):
            role, address = contract.SERVER, registry_rules.hub_address(entry)
            claims.serve_network(self.view, service=service, domain=domain, entry=entry, public_key=public_key)
        else:
            role = contract.CLIENT
            address = claims.join_network(self.view, service=service, domain=domain, entry=entry,
                                          public_key=public_key)
        pod = pod_rules.select(pods, spec["podSelector"])
        interface = self.node.interface_of(name)
        outcome = Outcome(name=name, status=Status.PENDING, role=role, address=address, subnet=entry["subnet"],
                          interface=interface,
                          pod=pod["metadata"]["name"] if pod else spec["podSelector"],
                          pod_labels=plan.pod_labels(uid=uid, role=role))
        problem = pod_rules.judge(pod, selector=spec["podSelector"], served_nodes=self.node.served_nodes)
        if role == contract.SERVER:
            outcome.recheck_in = self._hub_absence(service, domain=domain, entry=entry, present=problem is None,
                                                   asked=pod_rules.deletion_asked(pod))
            if outcome.recheck_in == 0 and not handed_over:
                registry.hand_over(self.view, domain=domain, name=name)
                return self._place_in_network(self.view.service_on(self.node, name) or service, pods=pods,
                                              secrets=secrets, handed_over=True)
        if problem is not None:
            outcome.status, message = problem
            outcome.message = f"{message}; the interface is added when it runs here (address {address} is reserved)"
        elif service.get("status") == Status.CONNECTED:
            outcome.status = Status.CONNECTED
        return outcome

    def _hub_absence(self, service: dict, *, domain: contract.Domain, entry: dict, present: bool,
                     asked: float | None) -> float | None:
        """For a hub: record in the registry when its pod went (when its deletion was
        ``asked``, else now; only while it serves clients) and clear that when the pod is
        back; the seconds left of the grace (0: hand the network over now), or None while
        nothing is to happen."""
        name, own_id = service["metadata"]["name"], contract.peer_id(uid=service["metadata"]["uid"])
        if present:
            if registry_rules.ABSENT_SINCE in entry:
                registry.record_absence(self.view, domain=domain, name=name, own_id=own_id, since=None)
            return None
        clients, _everyone_answered = claims.live_members(self.view, name, domain, hub_node=self.node.name)
        if not clients:
            return None
        now = time.time()
        left = registry_rules.failover_in(entry, grace=domain.failover_grace_seconds, now=now)
        if left is None:
            since = now if asked is None else min(asked, now)
            registry.record_absence(self.view, domain=domain, name=name, own_id=own_id,
                                    since=registry_rules.timestamp(since))
            left = since + domain.failover_grace_seconds - now
        # Whole seconds are recorded (rounded down): a look a moment after the grace finds it over.
        return 0.0 if left <= 0 else left + RECHECK_SLACK_SECONDS
