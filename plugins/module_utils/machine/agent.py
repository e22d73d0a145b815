"""The node agent: the WireGuard interfaces of one node's dtServices, inside their pods.

Owns turning a reconciled dtService (its ``peers``, ``spec.server``, key Secret and the
network's registry entry) into an interface in the pod's network namespace (which
``podnet`` finds from the container runtime by the pod's UID, and proves), judging
``Connected`` (a server whose interface is up; a client that has a handshake with its
server), reporting each tunnel's figures (handshake, bytes) for the daemon's metrics and the
dtService's annotations, and removing interfaces no dtService asks for any more. A client
whose handshake with its hub is older than WireGuard's reject window (``rules.health``) gets
a Warning Event and a fresh handshake in the same pass. Runs on the node, with the
node's privileges; pods get no capability. Interface operations are ``wireguard``'s.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef, Status
from ansible_collections.sightline.dtservice.plugins.module_utils.control.secrets import (
    commit_next_key,
    next_key_reason,
    next_private_key,
    read_private_key,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.control.status import (
    describe,
    try_write_status,
    write_health,
    write_status,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.data import netns as netns_tools
from ansible_collections.sightline.dtservice.plugins.module_utils.data import podnet, wireguard
from ansible_collections.sightline.dtservice.plugins.module_utils.data.mangle import TableMemory
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.side_by_side import side_by_side
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import (
    health,
    keys,
    plan,
    rotation,
    wgconfig,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import pods as pod_rules
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import registry as registry_rules
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.wgconfig import Peer

STALE_REASON = "HandshakeStale"
# How often a client that never reached its server sends a fresh first handshake, and how
# long the first one may take before that (one round trip, a few milliseconds, when the
# server knows the client).
HANDSHAKE_NUDGE_SECONDS = 1.0
FIRST_NUDGE_SECONDS = 0.1
# How long a client that took a new key waits for its first handshake with it, while its old
# session goes on: WireGuard retries an initiation after 5 s and up to a third of a second,
# and one retry is enough where the server took the key in the same pass.
KEY_SWITCH_WAIT_SECONDS = 6.0
# A client the reconcile left Pending (``left_pending``) shows it once it has waited this long
# for its first handshake: one that makes it in milliseconds goes straight to Connected.
PENDING_AFTER_SECONDS = 1.0
# Clients of one pass waited on at once (their waits are mostly sleeping).
PARALLEL_WAITS = 64
# Health annotations written at once by one node's settle: independent PATCHes.
PARALLEL_HEALTH_WRITES = 8
# Where each interface's wg-quick form (without its private key) is kept for people to read.
CONFIG_DIR = Path("/run/dtservice/wireguard")


@dataclass
class AgentOutcome:
    """What the agent did for one dtService. Never holds a private key."""

    name: str
    status: str
    message: str = ""
    interface: str | None = None
    changed: bool = False
    created: bool = False
    peers_added: list[str] = field(default_factory=list)
    peers_removed: list[str] = field(default_factory=list)
    # Per peer of the interface: overlay address, public key, latest handshake, bytes in and out.
    tunnels: list[dict[str, Any]] = field(default_factory=list)
    # The interface took the key Secret's next key into use and the Secret was committed.
    key_rotated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The outcome as a result's entry. Its lists are the outcome's own, which the pass has
        finished with (dataclasses.asdict copied every tunnel's figures: 7 ms of each pass at 100
        nodes)."""
        return dict(self.__dict__)


@dataclass
class _Waiting:
    """A client ``configure`` left for ``settle``: what judging and recording it needs."""

    outcome: AgentOutcome
    service: dict
    netns: str
    interface: str
    server: Peer
    addresses: dict[str, str]
    configured_at: float  # time.monotonic() when configure left it: its first initiation went then
    # When the interface took a new key in this pass (time.time()), its old session still
    # live: only a handshake since proves the tunnel, and WireGuard's own retries make it (see
    # NodeAgent.key_switched).
    key_since: float | None = None


def fresh(latest_handshake: int) -> bool:
    return health.fresh(latest_handshake, now=time.time())


def proven(latest_handshake: int, *, key_since: float | None) -> bool:
    return health.proven(latest_handshake, key_since=key_since, now=time.time())


class NodeAgent:
    """One pass of the node agent over the dtServices in a node's namespace."""

    def __init__(self, *, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef],
                 handshake_timeout: float, check_mode: bool = False,
                 runtimes: podnet.RuntimeViews | None = None, tables: TableMemory | None = None,
                 record_health: bool = False, key_switched: Mapping[str, float] | None = None,
                 left_pending: Collection[str] = ()) -> None:
        self.cluster = cluster
        runtimes = runtimes or podnet.RuntimeViews()
        self.runtime = runtimes.view(runtime_endpoint=node.runtime_endpoint, methods=node.pod_lookup,
                                     crictl=node.crictl)
        self.node = node
        self.federation = federation
        self.handshake_timeout = handshake_timeout
        self.check_mode = check_mode
        # The health annotations are written by passes that come again (the daemon's): a
        # one-shot run's handshake time would only age, and its write would touch objects
        # nothing else changed.
        self.record_health = record_health
        self._homes: dict[str, tuple[contract.Domain, dict] | None] = {}
        self._hubs: dict[tuple[str, str], dict] = {}
        self._waiting: list[_Waiting] = []
        self._underlay_mtu: int | None = None
        # Pod netns -> one reading of it for the pass: its proof, its interfaces' first look
        # and the look for interfaces no dtService asks for (three readings each, before).
        self._pods_read: dict[str, wireguard.PodReading] = {}
        self.tables = tables
        self._health_due: list[dict[str, Any]] = []  # write_health's arguments, for settle
        self._lock = threading.Lock()  # settle's waits queue health writes side by side
        # dtService -> when its interface took a new key in this pass (time.time()), given by an
        # earlier configure of the pass or recorded by this one. The newest handshake a client's
        # interface shows may have been made with the key before, whose session WireGuard keeps
        # counting after the switch (CI once saw a client Connected on it while its handshakes
        # with the new key crossed the hub's and were both dropped; WireGuard retried 5 s later).
        self.key_switched: dict[str, float] = dict(key_switched or {})
        # The dtServices whose Pending status the pass's reconcile left to this agent
        # (``NodeReconciler.interfaces_follow``): configure writes it for those it decides
        # nothing about, settle for a client still waiting after PENDING_AFTER_SECONDS.
        self.left_pending = frozenset(left_pending)
        self._decided: set[str] = set()  # dtServices whose status this agent wrote, or found as it should be

    def _pod_links(self, netns: str) -> netns_tools.Snapshot:
        """The pod's links as this pass first read them (``PodReading``)."""
        return self._pod_reading(netns).links()

    def _pod_reading(self, netns: str) -> wireguard.PodReading:
        return self._pods_read.setdefault(netns, wireguard.PodReading(netns=netns, tables=self.tables))

    def underlay_mtu(self) -> int | None:
        """The MTU of the node's link holding its address, read once a pass (the MSS clamp's)."""
        if self._underlay_mtu is None:
            self._underlay_mtu = netns_tools.underlay_mtu(address=self.node.address, netns=self.node.netns) or 0
        return self._underlay_mtu or None

    def configure(self, services: list[dict] | None = None) -> tuple[list[AgentOutcome], list[dict[str, str]]]:
        """Bring the interfaces of ``services`` (default: the node's dtServices, listed now)
        into their pods and remove the ones no dtService asks for. Clients still without a
        fresh handshake stay Pending until ``settle``: when every node of a machine is
        configured before any waits, a server configured in the same pass already knows its
        new clients when they are waited on."""
        if services is None:
            services = self.cluster.list_services(self.node)
        pods = self.cluster.list_pods(self.node)
        secrets = self.cluster.key_secrets(self.node)
        domains = {d["metadata"]["name"]: d for d in self.cluster.list_domains(self.node)}
        outcomes, expected = [], set()
        live = [s for s in services if not s["metadata"].get("deletionTimestamp")]
        for service in sorted(services, key=lambda s: s["metadata"]["name"]):
            if service["metadata"].get("deletionTimestamp"):
                continue
            try:
                attached = self._configure_one(service, pods=pods, secrets=secrets, domains=domains)
            except Exception as problem:  # noqa: BLE001 - contained: it stays with this dtService
                attached = self._failed(service, describe(problem))
            if attached is not None:
                netns, outcome = attached
                if netns and outcome.interface and outcome.status != Status.FAILED:
                    expected.add((netns, outcome.interface))
                outcomes.append(outcome)
        self._decided.update(outcome.name for outcome in outcomes)
        undecided = self.left_pending - self._decided
        for service in live:
            if service["metadata"]["name"] in undecided:
                try_write_status(cluster=self.cluster, node=self.node, service=service, status=Status.PENDING,
                                 message="")
        # Only the interface of a deleted dtService, of one its pod has moved away from, or of
        # one whose domain has taken this node out of its members is removed: one whose
        # dtService failed or is not attachable in this pass (a stale read, a claim not in the
        # hub's table yet) is left as it is, so a running tunnel is not torn down.
        untouched = {self.node.interface_of(s["metadata"]["name"]) for s in live
                     if not self._taken_out(s, domains=domains)}
        untouched -= {interface for _netns, interface in expected}
        removed = self._remove_unwanted(pods, expected, untouched=untouched)
        return outcomes, removed

    def _failed(self, service: dict, message: str) -> tuple[str, AgentOutcome]:
        outcome = AgentOutcome(name=service["metadata"]["name"], status=Status.FAILED, message=message)
        try_write_status(cluster=self.cluster, node=self.node, service=service, status=outcome.status,
                         message=message)
        return "", outcome

    def _configure_one(self, service: dict, *, pods: Mapping[str, dict], secrets: Mapping[str, dict],
                       domains: Mapping[str, dict]) -> tuple[str, AgentOutcome] | None:
        """One dtService's interface; its namespace and outcome, or None when it is not the
        agent's to attach (yet)."""
        pod = pod_rules.select(pods, service["spec"]["podSelector"])
        if pod is None or plan.self_entry(service) is None or pod_rules.judge(
                pod, selector=service["spec"]["podSelector"], served_nodes=self.node.served_nodes) is not None:
            return None  # not provisioned yet, or its pod cannot be attached: the reconciler says so
        try:
            netns = self.runtime.network_namespace(pod, read=self._pod_links)
        except podnet.PodLookupError as problem:
            self._write_status(service, AgentOutcome(
                name=service["metadata"]["name"],
                status=Status.POD_REFUSED if problem.refused else Status.WAITING_FOR_POD,
                message=f"pod {pod['metadata']['name']!r}: {problem}"))
            return None
        outcome = self._attach(service, netns=netns, secrets=secrets, domains=domains)
        return None if outcome is None else (netns, outcome)

    def settle(self, *, servers_configured_at: float = 0.0) -> None:
        """Wait for the first handshake of each client ``configure`` left Pending; write its
        status. The clients are waited on side by side: a node with many clients whose hubs
        do not answer waits one handshake timeout, not one for each of them. A client
        configured before ``servers_configured_at`` (``time.monotonic()``, when the servers
        the pass configures were), whose first initiations found no server to answer them,
        counts its wait from then. Then write the pass's health annotations
        (``record_health``)."""
        if self._waiting:
            side_by_side(self._waiting, lambda waiting: self._settle_one(waiting, since=max(
                waiting.configured_at, servers_configured_at)), at_most=PARALLEL_WAITS)
        self._waiting = []
        # The health figures go last, side by side: a status is what someone waits for.
        if self._health_due:
            side_by_side(self._health_due, lambda due: write_health(cluster=self.cluster, node=self.node, **due),
                         at_most=PARALLEL_HEALTH_WRITES)
        self._health_due = []

    def _settle_one(self, waiting: _Waiting, *, since: float) -> None:
        outcome = waiting.outcome
        try:
            outcome.status, outcome.message, live = self._client_state(
                waiting.interface, waiting.netns, waiting.server, since=since,
                key_since=waiting.key_since,
                still_waiting=(lambda: self._show_pending(waiting)) if outcome.name in self.left_pending else None)
            # What configure saw comes before any fresh start of the handshake here.
            known = {figure["public_key"]: figure["latest_handshake"] for figure in outcome.tunnels}
            outcome.tunnels = health.tunnel_figures(live, addresses=waiting.addresses, known=known)
            self._write_status(waiting.service, outcome)
            self._queue_health(waiting.service, outcome)
        except wireguard.WireGuardError as problem:
            outcome.status, outcome.message = Status.FAILED, f"interface {outcome.interface}: {problem}"
            try_write_status(cluster=self.cluster, node=self.node, service=waiting.service, status=outcome.status,
                             message=outcome.message)
        except Exception as problem:  # noqa: BLE001 - contained: it stays with this dtService
            outcome.status, outcome.message = Status.FAILED, describe(problem)
            try_write_status(cluster=self.cluster, node=self.node, service=waiting.service, status=outcome.status,
                             message=outcome.message)

    def _write_status(self, service: dict, outcome: AgentOutcome) -> None:
        written = write_status(cluster=self.cluster, node=self.node, service=service,
                               status=outcome.status, message=outcome.message)
        outcome.changed = outcome.changed or written is not None
        self._decided.add(outcome.name)

    def _show_pending(self, waiting: _Waiting) -> None:
        """The Pending status the reconcile left to this pass, for a client still waiting; its
        final status is written over the object this write made."""
        written = try_write_status(cluster=self.cluster, node=self.node, service=waiting.service,
                                   status=Status.PENDING, message="")
        if written is not None:
            waiting.service = written

    def _queue_health(self, service: dict, outcome: AgentOutcome) -> None:
        """The number of peers and the newest handshake, for the annotations the printer columns
        show (not an outcome's change: they record what was seen, not what was made); written
        at the end of ``settle``."""
        if self.check_mode or not self.record_health:
            return
        newest = max((t["latest_handshake"] for t in outcome.tunnels), default=0)
        with self._lock:
            self._health_due.append({"service": service, "peers": len(outcome.tunnels), "newest": newest,
                                     "now": time.time()})

    def _report_stale(self, service: dict, *, server: Peer, latest: int) -> None:
        """A client whose tunnel went quiet is told on its object before the pass repairs it."""
        if self.check_mode:
            return
        try:
            self.cluster.record_event(self.node, service=service, reason=STALE_REASON, warning=True, message=(
                f"the newest WireGuard handshake with the hub at {server.endpoint} is {time.time() - latest:.0f}s "
                f"old (a session's keys are refused after {health.REJECT_AFTER}s); a new handshake was started"))
        except Exception:  # noqa: BLE001 - the repair goes on; the Event is for people
            pass

    def _attach(self, service: dict, *, netns: str, secrets: Mapping[str, dict],
                domains: Mapping[str, dict]) -> AgentOutcome | None:
        """Configure one dtService's interface from its authorities alone: the home dtDomain
        (settings, the network's subnet, hub and endpoint), the hub's table (addresses and
        keys) and the dtService's key Secret. What the dtService itself holds in ``peers`` and
        ``spec.server`` is its owner's to edit and is never applied."""
        name = service["metadata"]["name"]
        domain_obj = domains.get(service["spec"]["domainSelector"])
        home = None if domain_obj is None else self._home(self.cluster.domain(domain_obj))
        network = None if home is None else home[1].get(name)
        if home is None or network is None:
            return None  # not provisioned yet: the reconciler says so
        domain, subnet = home[0], network["subnet"]
        interface = self.node.interface_of(name)
        outcome = AgentOutcome(name=name, status=Status.PENDING, interface=interface)
        try:
            secret = secrets.get(name)
            # The published key is the current one; a staged next key is put to use first and
            # published once it is (see docs/day2.md, "Key rotation").
            published = keys.public_key_of(read_private_key(secret))
            private_key = next_private_key(secret) or read_private_key(secret)
            public_key = keys.public_key_of(private_key)
            uid = service["metadata"]["uid"]
            if network["server"]["id"] == contract.peer_id(uid=uid):
                role, address = contract.SERVER, registry_rules.hub_address(network)
                listen_port: int | None = registry_rules.endpoint_port(network["endpoint"])
                clients, refused = plan.hub_peers(table=service.get("peers") or {}, subnet=subnet, hub_key=published)
                if refused:
                    outcome.message = f"left out of the interface (not valid peers of {subnet}): {', '.join(refused)}"
                peers = [Peer(public_key=key, allowed_ips=[f"{a}/32"]) for a, key in clients]
                addresses = {key: a for a, key in clients}
            else:
                role, listen_port = contract.CLIENT, None
                table = self._hub_table(network, name)
                own = plan.address_in_table(table=table, uid=uid)
                hub_entry = table.get(registry_rules.hub_address(network)) or {}
                if own is None or plan.role_of(hub_entry) != contract.SERVER:
                    return None  # its claim is not in the hub's table yet: the reconciler makes it
                if table[own].get("publicKey") not in (published, public_key):
                    raise ValueError(f"the hub's table holds another public key for {own}; left as it is")
                address = own
                peers = [Peer(public_key=hub_entry["publicKey"], allowed_ips=[subnet], endpoint=network["endpoint"],
                              persistent_keepalive=domain.persistent_keepalive or None)]
                addresses = {hub_entry["publicKey"]: registry_rules.hub_address(network)}
            prefix = ipaddress.ip_network(subnet).prefixlen
            switched_now = time.time() if public_key != published and secret is not None else None
            switched_at = switched_now if switched_now is not None else self.key_switched.get(name)
            result = wireguard.ensure_interface(
                name=interface, node_netns=self.node.netns, pod_netns=netns, address=f"{address}/{prefix}",
                mtu=domain.mtu, listen_port=listen_port, private_key=private_key, peers=peers,
                forward=role == contract.SERVER, underlay_mtu=self.underlay_mtu(), check_mode=self.check_mode,
                earlier=self._pod_reading(netns))
            outcome.changed, outcome.created = result["changed"], result["created"]
            if not self.check_mode:
                write_readable_config(interface=interface, text=wgconfig.render_wg_quick(
                    interface_name=interface, address=f"{address}/{prefix}", mtu=domain.mtu,
                    listen_port=listen_port, peers=peers,
                    private_key_path=f"/etc/wireguard/{interface}.key"))
            outcome.peers_added, outcome.peers_removed = result["peers_added"], result["peers_removed"]
            # A client's server peer is configured afresh when its handshake is stale, and
            # WireGuard then forgets it; the object's record keeps since when the tunnel is down.
            recorded = health.recorded_handshake(service["metadata"].get("annotations"), now=time.time())
            known = {} if role == contract.SERVER else {peers[0].public_key: recorded}
            outcome.tunnels = health.tunnel_figures(result["peers"], addresses=addresses, known=known)
            if self.check_mode:
                return outcome
            if switched_now is not None and secret is not None:
                self._commit_rotation(service, secret)
                self.key_switched[name] = switched_now
                outcome.key_rotated = outcome.changed = True
            latest = 0 if role == contract.SERVER else result["latest_handshakes"].get(peers[0].public_key, 0)
            if role == contract.SERVER or proven(latest, key_since=switched_at):
                outcome.status = Status.CONNECTED
            else:
                if latest and not fresh(latest):
                    self._report_stale(service, server=peers[0], latest=latest)
                self._waiting.append(_Waiting(outcome=outcome, service=service, netns=netns, interface=interface,
                                              server=peers[0], addresses=addresses,
                                              configured_at=time.monotonic(),
                                              # With no live session, any fresh handshake is with this key.
                                              key_since=switched_at if fresh(latest) else None))
                return outcome
        except (wireguard.WireGuardError, ValueError) as problem:
            outcome.status, outcome.message = Status.FAILED, f"interface {interface}: {problem}"
            try_write_status(cluster=self.cluster, node=self.node, service=service, status=outcome.status,
                             message=outcome.message)
            return outcome
        self._write_status(service, outcome)
        self._queue_health(service, outcome)
        return outcome

    def _commit_rotation(self, service: dict, secret: dict) -> None:
        """The interface uses the staged key now: make it the Secret's only key (the next
        reconcile publishes it), record a request as served, and tell it in an Event."""
        reason = next_key_reason(secret)
        commit_next_key(cluster=self.cluster, node=self.node, secret=secret)
        requested = rotation.requested_value(reason)
        if requested is not None:
            self.cluster.annotate_service(self.node, service["metadata"]["name"],
                                          {contract.KEY_ROTATED_ANNOTATION: requested})
        self.cluster.record_event(self.node, service=service, reason=contract.KEY_ROTATED_REASON,
                                  message=f"a new WireGuard key pair is in use ({rotation.describe(reason)}); "
                                          "its peers learn the public key from the network's table",
                                  warning=False)

    def _client_state(self, interface: str, netns: str, server: Peer, *, since: float,
                      key_since: float | None = None,
                      still_waiting: Callable[[], None] | None = None) -> tuple[str, str, dict]:
        """Connected once the client has a fresh handshake with its server (made since
        ``key_since``, when its interface took a new key); with the peers as last read.
        Without one soon after ``since`` (when configure left the client, and its first
        initiation went out), a new initiation goes out: the server may have learnt of this
        client only after the client's first (its node configured side by side with this
        one), or the tunnel went quiet past the reject window, where there is no session left
        to lose (a handshake under way is left to finish: restarting it would throw away a
        session that is a moment from being made). Not after a new key while the old session
        lives (``key_since``): configuring the server peer afresh would drop the packets
        WireGuard holds for the handshake, which its own retries make; Pending after
        ``KEY_SWITCH_WAIT_SECONDS``. ``still_waiting`` is called once the wait has lasted
        ``PENDING_AFTER_SECONDS``."""
        waiting = self.handshake_timeout if key_since is None else min(self.handshake_timeout, KEY_SWITCH_WAIT_SECONDS)
        deadline = time.monotonic() + waiting
        next_nudge = since + FIRST_NUDGE_SECONDS
        pause = 0.02
        while True:
            live = wireguard.wireguard_state(name=interface, pod_netns=netns)
            if live is None:
                raise wireguard.WireGuardError(f"no interface {interface} in {netns}")
            latest = live.peers[server.public_key].latest_handshake if server.public_key in live.peers else 0
            if proven(latest, key_since=key_since):
                return Status.CONNECTED, "", live.peers
            if key_since is None and time.monotonic() >= next_nudge:
                # The server's side is usually being configured by its own node's run right now.
                wireguard.restart_handshake(name=interface, pod_netns=netns, peer=server)
                next_nudge = time.monotonic() + HANDSHAKE_NUDGE_SECONDS
                pause = 0.02  # its answer comes in milliseconds too
            if still_waiting is not None and time.monotonic() >= since + PENDING_AFTER_SECONDS:
                still_waiting()
                still_waiting = None
            if time.monotonic() >= deadline:
                if key_since is not None:
                    # Its server takes the new key in its own node's run (the table's write
                    # starts it in the daemon), which this one does not hold up: the next run
                    # looks again.
                    return Status.PENDING, "the server has not made a handshake with the new key yet", live.peers
                return Status.SERVER_UNREACHABLE, (
                    f"no WireGuard handshake with the server at {server.endpoint} within "
                    f"{self.handshake_timeout:.0f}s: its pod may not be running yet, or UDP from "
                    f"{self.node.address} to {server.endpoint} does not get through"), live.peers
            # A handshake takes a few milliseconds: look soon, then less often.
            time.sleep(pause)
            pause = min(2 * pause, 0.2)

    def _home(self, local: contract.Domain) -> tuple[contract.Domain, dict] | None:
        """The domain as its home copy says (members, settings) and its registry, once a pass."""
        if local.name not in self._homes:
            home = self.federation.get(local.home.name)
            home_obj = None if home is None else next(
                (d for d in self.cluster.list_domains(home) if d["metadata"]["name"] == local.name), None)
            self._homes[local.name] = None if home_obj is None else (
                self.cluster.domain(home_obj), registry_rules.networks_of(home_obj))
        return self._homes[local.name]

    def _taken_out(self, service: dict, *, domains: Mapping[str, dict]) -> bool:
        """Whether the home copy of the dtService's domain, the authority on its members, leaves
        this node out. The hubs serve members only and have dropped the node's dtServices from
        their tables, so its interfaces reach nobody. A domain whose home copy cannot be read
        says nothing."""
        domain_obj = domains.get(service["spec"]["domainSelector"])
        try:
            home = None if domain_obj is None else self._home(self.cluster.domain(domain_obj))
        except Exception:  # noqa: BLE001 - an API server that does not answer, a malformed copy
            return False
        return home is not None and home[0].member(name=self.node.name, namespace=self.node.namespace) is None

    def _hub_table(self, network: Mapping[str, Any], name: str) -> dict:
        """The ``peers`` of the network's hub, as its dtService holds them, once a pass."""
        hub_node = self.federation.get(network["server"]["node"])
        key = (network["server"]["node"], name)
        if key not in self._hubs:
            hub = None if hub_node is None else next(
                (s for s in self.cluster.list_services(hub_node, shared=True) if s["metadata"]["name"] == name), None)
            self._hubs[key] = (hub or {}).get("peers") or {}
        return self._hubs[key]

    def _remove_unwanted(self, pods: Mapping[str, dict], expected: set[tuple[str, str]], *,
                         untouched: set[str]) -> list[dict[str, str]]:
        """Interfaces of ours in this node's pods that no dtService asks for (deleted ones),
        except the ``untouched`` ones of live dtServices not attached in this pass."""
        removed = []
        for pod_name, pod in sorted(pods.items()):
            if pod_rules.judge(pod, selector=pod_name, served_nodes=self.node.served_nodes) is not None:
                continue  # not running here: its namespace (if any) is not this agent's to look into
            try:
                netns = self.runtime.network_namespace(pod, read=self._pod_links)
            except podnet.PodLookupError:
                continue
            # As read before this pass configured the pod: what it made here is expected anyway.
            for interface in our_interfaces(self._pod_reading(netns)):
                if (netns, interface) in expected or interface in untouched:
                    continue
                if not self.check_mode:
                    wireguard.remove_interface(name=interface, pod_netns=netns)
                    (CONFIG_DIR / f"{interface}.conf").unlink(missing_ok=True)
                removed.append({"pod": pod_name, "interface": interface})
        return removed


def write_readable_config(*, interface: str, text: str) -> None:
    """The interface as a wg-quick file, for a person to read or to use by hand with the key
    from the dtService's Secret; rewritten only when it differs."""
    CONFIG_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = CONFIG_DIR / f"{interface}.conf"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        path.chmod(0o600)


def our_interfaces(reading: wireguard.PodReading) -> list[str]:
    try:
        links = reading.links().links
    except wireguard.WireGuardError:
        return []
    return sorted(link["ifname"] for link in links if contract.INTERFACE_PATTERN.match(link["ifname"]))
