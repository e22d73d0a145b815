"""One whole pass over the nodes of a machine: what deploy.yml and the reconciler daemon both
run (role dtservice_pass), in one process, so a change costs one module run per machine.

Owns the order, in phases over all nodes of the call: reconcile the dtServices (with the
teardown finalizer) and label the pods of every node first (``reconcile_nodes``, also the
whole of the dtservice_reconcile module; the networks a node is the planned hub of go
before every other dtService, so the inventory's hubs register them), then bring the
interfaces up (and remove those of deleted dtServices) on every node, then wait for the
clients' first handshakes and finish the deletions users asked for. Because every
node's claims are written before any hub's interface is configured, a joiner and its server
in the same call meet in that call: the server's interface already knows the joiner when the
joiner waits for its first handshake. A node with only new clients of the call's planned
networks is configured as soon as it is reconciled (``goes_ahead``): its links are made
while the other nodes' reconciles wait on the API servers. Each step is the same core code
the separate modules run.
When a node's interface put a rotated key to use, the nodes of the call are reconciled (the
new public key is published) and configured once more before anyone is waited on, so its
peers on this machine take the new key on in the same pass (docs/day2.md, "Key
rotation"). Where configuring can only examine (every interface in place, nothing to rotate
or delete), half of many nodes are configured and settled in a second process
(``examined_in_two``): that is one thread's CPU work, and the machine has another core.

A node whose step fails as a whole (its API server is down, the provisioner's rights there
were taken away) is left out of the later phases and reported with its error; the other
nodes of the call go on."""

from __future__ import annotations

import functools
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.control import teardown
from ansible_collections.sightline.dtservice.plugins.module_utils.control.reconciler import (
    NodeReconciler,
    Outcome,
    left_to_agent,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.control.status import describe
from ansible_collections.sightline.dtservice.plugins.module_utils.data import wggo
from ansible_collections.sightline.dtservice.plugins.module_utils.data.mangle import TableMemory
from ansible_collections.sightline.dtservice.plugins.module_utils.data.podnet import NamespaceMemory, RuntimeViews
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster
from ansible_collections.sightline.dtservice.plugins.module_utils.machine.agent import AgentOutcome, NodeAgent
from ansible_collections.sightline.dtservice.plugins.module_utils.machine.second_process import (
    SecondProcess,
    SecondProcessLost,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan

# A converged pass over this many nodes or more examines half of their interfaces in a second
# process (one thread's CPU work, 1.3 ms a node): below it, the fork costs about what it saves.
SECOND_PROCESS_AT = 20
# Nodes configured ahead (``Ahead``) at once, beside the phases' own threads.
AHEAD_AT_ONCE = 16
# How much longer than a client's handshake wait the second process may take before its
# nodes are done here instead.
SECOND_PROCESS_GRACE_SECONDS = 60


def reconcile_phase(*, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef],
                    ports_in_use: Callable[[], Collection[int]] | None = None, key_max_age: float | None = None,
                    rotate_key: str | None = None, rotate_only: Collection[str] | None = None,
                    interfaces_follow: bool = False) -> tuple[list[Outcome], dict[str, Any]]:
    """Reconcile the node's dtServices and label its pods with their dtService roles; returns
    the outcomes and the label patches. ``ports_in_use`` tells the UDP ports other processes
    hold on the node's address (known on its machine); ``key_max_age`` (seconds) rotates older
    keys; ``rotate_key`` asks for new keys (of the dtServices in ``rotate_only``, else all);
    ``interfaces_follow``: the pass configures the node next and writes a Pending status (see
    ``NodeReconciler``)."""
    outcomes = NodeReconciler(cluster=cluster, node=node, federation=federation, ports_in_use=ports_in_use,
                              key_max_age=key_max_age, interfaces_follow=interfaces_follow).provision(
        rotate_key=rotate_key, rotate_only=rotate_only)
    label_patches = plan.label_changes(pods=cluster.list_pods(node),
                                       wanted=plan.pods_labels(o.as_dict() for o in outcomes))
    for pod, labels in label_patches.items():
        cluster.patch_pod_labels(node, pod, labels)
    return outcomes, label_patches


def deletes_or_rotates(*, cluster: Cluster, node: NodeRef) -> bool:
    """True when a dtService of the node is being deleted or has a next key staged: the pass
    orders those steps itself (putting a key to use writes, and its peers hold back traffic
    until they have it)."""
    secrets = cluster.key_secrets(node).values()
    return any(contract.NEXT_PRIVATE_KEY_FIELD in (secret.get("data") or {}) for secret in secrets) \
        or any(service["metadata"].get("deletionTimestamp") for service in cluster.list_services(node, shared=True))


def only_examines(*, cluster: Cluster, node: NodeRef) -> bool:
    """True when configuring the node can only examine interfaces: nothing is deleted or
    rotated (``deletes_or_rotates``), and each dtService provisioned has its interface's
    wireguard-go control socket on this machine. (Under kernel WireGuard there is none:
    False, and the pass works as before.)"""
    if deletes_or_rotates(cluster=cluster, node=node):
        return False
    return all(plan.self_entry(service) is None or wggo.control_socket_exists(
        node.interface_of(service["metadata"]["name"])) for service in cluster.list_services(node, shared=True))


def goes_ahead(outcomes: Sequence[Outcome], *, planned: Collection[str], cluster: Cluster, node: NodeRef) -> bool:
    """True for a node whose interfaces are best made right after its reconcile, while the
    other nodes are still reconciled: making a link waits on the kernel (16 ms a move into a
    pod's namespace, one after another on the machine), reconciling on the API servers, and
    the two overlap. Such a node has a new dtService (its Pending left to the agent) and only
    clients of networks the call's hubs' step registered (``planned``), so its claims and its
    hub's own entry are in the hub's table; a hub goes after every node is reconciled (its
    table is whole only then). Nothing of it is deleted or rotated (``deletes_or_rotates``)."""
    return any(left_to_agent(outcome) for outcome in outcomes) \
        and all(outcome.role == contract.CLIENT and outcome.name in planned for outcome in outcomes) \
        and not deletes_or_rotates(cluster=cluster, node=node)


def read_ahead(*, cluster: Cluster, node: NodeRef) -> None:
    """List what reconciling the node reads: its key Secrets and pods, its cluster's dtServices
    and dtDomains. The listings are the call's, so the phases after find them made. Each is one
    LIST per cluster or Kubernetes node, which every thread wanting it waits for: the nodes
    start at different ones (by their names), so that the first threads of the phase send them
    side by side rather than each LIST after the one before."""
    reads = (cluster.key_secrets, lambda node: cluster.list_services(node, shared=True), cluster.list_domains,
             cluster.list_pods)
    first = zlib.crc32(node.name.encode()) % len(reads)
    for read in reads[first:] + reads[:first]:
        read(node)


def reconcile_nodes(phase: Callable[..., dict[str, Any]], *, federation: Mapping[str, NodeRef],
                    serves: Mapping[str, Collection[str]],
                    ports_of: Callable[[NodeRef], Collection[int]] | None = None, key_max_age: float | None = None,
                    rotate_key: str | None = None, rotate_only: Collection[str] | None = None,
                    interfaces_follow: bool = False,
                    then: Callable[..., None] | None = None) -> dict[str, Any]:
    """The reconcile phase over the nodes ``phase(work, only=names)`` runs ``work`` on (those
    named; every one without ``only``): first the networks
    each node is the planned hub of (``serves``, node name -> dtService names), on every node,
    so that no joiner of the call registers a network the inventory gives to another node;
    then every dtService. ``ports_of(node)``, where the call runs on the nodes' machine, tells
    the UDP ports other processes hold there; ``interfaces_follow``: see ``reconcile_phase``;
    ``then(cluster=, node=, reconciled=)`` runs right after each node's reconcile, in its
    thread. Node name -> ``reconcile_phase``'s answer."""
    def ports(node: NodeRef) -> Callable[[], Collection[int]] | None:
        return None if ports_of is None else lambda: ports_of(node)

    # Every node's reads side by side first: the hubs' step would otherwise list its
    # collections one after another while every other node waits for it.
    phase(read_ahead)
    hubs = {name for name, networks in serves.items() if networks}
    if hubs:
        def serve_first(*, cluster: Cluster, node: NodeRef) -> None:
            NodeReconciler(cluster=cluster, node=node, federation=federation, ports_in_use=ports(node),
                           key_max_age=key_max_age, interfaces_follow=interfaces_follow).provision(
                only=set(serves[node.name]), rotate_key=rotate_key, rotate_only=rotate_only)
        phase(serve_first, only=hubs)

    def reconcile(*, cluster: Cluster, node: NodeRef) -> tuple[list[Outcome], dict[str, Any]]:
        reconciled = reconcile_phase(cluster=cluster, node=node, federation=federation, ports_in_use=ports(node),
                                     key_max_age=key_max_age, rotate_key=rotate_key, rotate_only=rotate_only,
                                     interfaces_follow=interfaces_follow)
        if then is not None:
            then(cluster=cluster, node=node, reconciled=reconciled)
        return reconciled
    return phase(reconcile)


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
                    check_mode: bool, runtimes: RuntimeViews | None = None, tables: TableMemory | None = None,
                    record_health: bool = False, key_switched: Mapping[str, float] | None = None,
                    left_pending: Collection[str] = ()) -> Attaching:
    """The node's interfaces configured (and those of deleted dtServices removed);
    ``key_switched``: see ``NodeAgent``; ``left_pending``, the dtServices whose Pending status
    the reconcile left to this step: written for those that get no interface in it."""
    # One list for both steps: a dtService being deleted in it has its interface removed by
    # the agent before its deletion is finished. (Listed again afterwards, one deleted
    # meanwhile would be let go with its interface still in the pod.)
    services = cluster.list_services(node)
    agent = NodeAgent(cluster=cluster, node=node, federation=federation, handshake_timeout=handshake_timeout,
                      check_mode=check_mode, runtimes=runtimes, tables=tables, record_health=record_health,
                      key_switched=key_switched, left_pending=left_pending)
    interfaces, removed = agent.configure(services)
    return Attaching(cluster=cluster, node=node, agent=agent, services=services, interfaces=interfaces,
                     removed=removed)


def settle_phase(attaching: Attaching, *, federation: Mapping[str, NodeRef],
                 servers_configured_at: float = 0.0) -> dict[str, Any]:
    """The node's clients waited on (see ``NodeAgent.settle``), and the deletions users asked
    for finished."""
    attaching.agent.settle(servers_configured_at=servers_configured_at)
    finished, held = [], {}
    for service in attaching.services:
        finalizers = service["metadata"].get("finalizers") or []
        if service["metadata"].get("deletionTimestamp") and contract.FINALIZER in finalizers:
            try:
                teardown.remove_service(cluster=attaching.cluster, node=attaching.node, federation=federation,
                                        service=service)
            except Exception as problem:  # noqa: BLE001 - one deletion that cannot finish holds only itself
                held[service["metadata"]["name"]] = describe(problem)
                continue
            finished.append(service["metadata"]["name"])
    interfaces, removed = attaching.interfaces, attaching.removed
    return {"interfaces": [i.as_dict() for i in interfaces], "removed_interfaces": removed, "deleted": finished,
            "deletions_held": held, "changed": bool(removed or finished) or any(i.changed for i in interfaces)}


@dataclass
class NodeFailed:
    """A node whose phase failed as a whole: why, for its result."""

    error: str


def contained(work: Callable[..., Any], *, failed: Mapping[str, NodeFailed]) -> Callable[..., Any]:
    """``work`` for one node, skipped for a node that failed before, its failure kept with it."""
    def run(*, cluster: Cluster, node: NodeRef) -> Any:
        if node.name in failed:
            return failed[node.name]
        try:
            return work(cluster=cluster, node=node)
        except Exception as problem:  # noqa: BLE001 - contained: it stays with this node
            return NodeFailed(error=describe(problem))
    return run


def _rotated(configured: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Node -> its dtServices whose interfaces put a rotated key to use, and when."""
    return {name: dict(attaching.agent.key_switched)
            for name, attaching in configured.items() if isinstance(attaching, Attaching)}


def _left_pending(reconciled: Any) -> set[str]:
    """The dtServices of a node's reconcile (``reconcile_phase``'s answer, or ``NodeFailed``)
    whose Pending status it left to the pass's configure (``interfaces_follow``)."""
    if not isinstance(reconciled, tuple):
        return set()
    return {outcome.name for outcome in reconciled[0] if left_to_agent(outcome)}


def _merged(first: Mapping[str, Any], again: Mapping[str, Any]) -> dict[str, Any]:
    """A node's second reconcile, changed where either changed something."""
    merged = dict(again)
    for name, result in again.items():
        earlier = first.get(name)
        if isinstance(result, NodeFailed) or earlier is None or isinstance(earlier, NodeFailed):
            continue
        changed_before = {o.name for o in earlier[0] if o.changed}
        for outcome in result[0]:
            outcome.changed = outcome.changed or outcome.name in changed_before
        merged[name] = (result[0], {**earlier[1], **result[1]})
    return merged


def examined_in_two(phase: Callable[..., dict[str, Any]], *, nodes: Sequence[NodeRef],
                    configure: Callable[..., Any], settle: Callable[[Any], dict[str, Any]],
                    runtimes: RuntimeViews, tables: TableMemory, timeout: float) -> dict[str, Any]:
    """Configure, then settle, ``nodes`` whose configuring only examines (``only_examines``):
    the second half in a second process, side by side with the first half here; node name ->
    ``settle``'s answer (given what ``configure`` answered), or ``NodeFailed``. Both processes
    configure all of theirs before either settles, so a client's server knows it when it is
    waited on. What the second process learned of pods' namespaces and mangle tables is kept
    with this one's. Should it end without its answer, its nodes are done here after all."""
    theirs = {node.name for node in nodes[len(nodes) // 2:]}
    ours = {node.name for node in nodes} - theirs

    def both_steps(names: set[str], *, between: Callable[[], None] = lambda: None) -> dict[str, Any]:
        configured = phase(configure, one_at_a_time=True, only=names)
        between()
        return phase(lambda *, cluster, node: settle(configured[node.name]), only=names)

    second = SecondProcess(lambda meet: (both_steps(theirs, between=meet), runtimes.take_learned(),
                                         tables.take_learned()), timeout=timeout)
    settled = both_steps(ours, between=second.meet)
    try:
        answer, namespaces, tables_read = second.answer()
    except SecondProcessLost:
        return {**settled, **both_steps(theirs)}
    runtimes.absorb(namespaces)
    tables.absorb(tables_read)
    return {**settled, **answer}


class Ahead:
    """The nodes configured right after their own reconcile (``goes_ahead``), in threads of
    their own: the reconcile phase goes on meanwhile, and the configure phase for the other
    nodes. Leaving the ``with`` waits for them."""

    def __init__(self, configure: Callable[..., Attaching], *, planned: Collection[str]) -> None:
        self._configure = configure
        self._planned = set(planned)
        self._pool = ThreadPoolExecutor(max_workers=AHEAD_AT_ONCE, thread_name_prefix="ahead")
        self._started: dict[str, Future] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True)

    def after_reconcile(self, *, cluster: Cluster, node: NodeRef, reconciled: tuple[list[Outcome], dict]) -> None:
        """``reconcile_nodes``' ``then``: start configuring the node if it goes ahead."""
        try:
            going = goes_ahead(reconciled[0], planned=self._planned, cluster=cluster, node=node)
        except Exception:  # noqa: BLE001 - not ahead then: the configure phase meets it and reports it
            return
        if going:
            configure = contained(functools.partial(self._configure, left_pending=_left_pending(reconciled)),
                                  failed={})
            future = self._pool.submit(configure, cluster=cluster, node=node)
            with self._lock:
                self._started[node.name] = future

    @property
    def names(self) -> set[str]:
        with self._lock:
            return set(self._started)

    def results(self) -> dict[str, Attaching | NodeFailed]:
        """Node -> its ``Attaching``, or ``NodeFailed``; once every one has ended."""
        with self._lock:
            started = dict(self._started)
        return {name: future.result() for name, future in started.items()}


def machine_pass(run_on_nodes: Callable[..., dict[str, Any]], *, nodes: Sequence[NodeRef],
                 federation: Mapping[str, NodeRef], serves: Mapping[str, Collection[str]], handshake_timeout: float,
                 check_mode: bool, record_health: bool = False,
                 key_max_age: float | None = None) -> dict[str, dict[str, Any]]:
    """The phases over ``nodes``, which ``run_on_nodes(work, at_most=n, only=names)`` runs
    ``work`` on; node -> result (with ``error`` set for a node that failed as a whole). Every
    node's interfaces are configured before any client is waited on; ``record_health``: see
    ``NodeAgent``."""
    failed: dict[str, NodeFailed] = {}

    def phase(work: Callable[..., Any], *, one_at_a_time: bool = False,
              only: Collection[str] | None = None) -> dict[str, Any]:
        results = (run_on_nodes(contained(work, failed=failed), at_most=1, only=only) if one_at_a_time
                   else run_on_nodes(contained(work, failed=failed), only=only))
        failed.update({name: result for name, result in results.items() if isinstance(result, NodeFailed)})
        return results

    # Run on the nodes' machine, the pass sees the sockets there: a hub avoids ports others hold.
    def ports_of(node: NodeRef) -> Collection[int]:
        return wggo.foreign_udp_ports(node.netns)

    # Nodes that share a machine share one listing of its runtime, and what its earlier
    # passes proved: a converged pass asks the runtime nothing, and reads no pod's mangle
    # table with a process.
    runtimes, tables = RuntimeViews(memory=NamespaceMemory()), TableMemory()
    # Listing a machine's runtime takes two crictl runs: a thread makes the listings while
    # the nodes are reconciled (which waits on API servers), and the interfaces' pod lookups
    # find them made. (A thread per node, like the phases', slowed 100 nodes' reconcile.)
    listing_ahead = threading.Thread(target=runtimes.list_ahead, args=(nodes,), daemon=True)
    listing_ahead.start()
    # The agents write what comes of a new dtService in its reconcile's place; in check mode
    # they change nothing, and the preview shows the reconcile's Pending.
    follow = not check_mode

    def configure_node(*, cluster: Cluster, node: NodeRef, left_pending: Collection[str],
                       key_switched: Mapping[str, float] | None = None) -> Attaching:
        return configure_phase(cluster=cluster, node=node, federation=federation, handshake_timeout=handshake_timeout,
                               check_mode=check_mode, runtimes=runtimes, tables=tables, record_health=record_health,
                               key_switched=key_switched, left_pending=left_pending)

    def configure(*, cluster: Cluster, node: NodeRef, key_switched: Mapping[str, float] | None = None) -> Attaching:
        return configure_node(cluster=cluster, node=node, key_switched=key_switched,
                              left_pending=_left_pending(reconciled.get(node.name)) if follow else ())

    # Clients of the call's planned networks are configured as soon as they are reconciled
    # (goes_ahead): their links are made while the other nodes' reconciles wait on the API,
    # and while the configure phase makes the rest.
    with Ahead(configure_node, planned={name for names in serves.values() for name in names}) as ahead:
        reconciled = reconcile_nodes(phase, federation=federation, serves=serves, ports_of=ports_of,
                                     key_max_age=key_max_age, interfaces_follow=follow,
                                     then=ahead.after_reconcile if follow else None)
        listing_ahead.join()

        # Threads pay off while interfaces are made or removed (wireguard-go starts and stops);
        # where every interface is in place, configuring only reads and compares, CPU work that
        # threads slow down (a converged configure of 100 nodes: 0.15 s of CPU in one thread,
        # 0.37 s in 16, most of the difference spent waiting on each other), and a second process
        # shares out (0.13 to 0.16 s down to 0.09 to 0.11 s).
        examining = not ahead.names and all(phase(only_examines, one_at_a_time=True).values())
        in_two = examining and len(nodes) >= SECOND_PROCESS_AT
        if not in_two:
            configured = phase(configure, one_at_a_time=examining, only={n.name for n in nodes} - ahead.names)
            configured_ahead = ahead.results()
            failed.update({name: result for name, result in configured_ahead.items()
                           if isinstance(result, NodeFailed)})
            configured.update(configured_ahead)
    if in_two:
        # Nothing to rotate or delete here (only_examines): no step but these two.
        settled = examined_in_two(phase, nodes=nodes, configure=configure,
                                  settle=lambda attaching: settle_phase(attaching, federation=federation),
                                  runtimes=runtimes, tables=tables,
                                  timeout=handshake_timeout + SECOND_PROCESS_GRACE_SECONDS)
        failed.update({name: result for name, result in settled.items() if isinstance(result, NodeFailed)})
    else:
        rotated = _rotated(configured)
        if any(rotated.values()):
            # Published only now that its owner uses it, the new key reaches the peers of this
            # machine in this pass; until they take it on, both ends hold back what they send.
            reconciled = _merged(reconciled, phase(lambda *, cluster, node: reconcile_phase(
                cluster=cluster, node=node, federation=federation, ports_in_use=lambda: ports_of(node))))
            # A client that took a new key is Connected once it has a handshake made with it.
            configured = phase(lambda *, cluster, node: configure(cluster=cluster, node=node,
                                                                  key_switched=rotated.get(node.name)),
                               one_at_a_time=examining)
            for name, attaching in configured.items():
                for interface in getattr(attaching, "interfaces", []):
                    if interface.name in rotated.get(name, {}):
                        interface.key_rotated = interface.changed = True
        # Every interface of the call is configured now: a client configured ahead of its hub
        # counts its wait for a first handshake from here.
        servers_configured_at = time.monotonic()
        settled = phase(lambda *, cluster, node: settle_phase(configured[node.name], federation=federation,
                                                              servers_configured_at=servers_configured_at))
    if not check_mode:
        runtimes.keep()
        tables.keep()
    passed = {}
    for name in reconciled:
        if name in failed:
            passed[name] = {"services": [], "pod_labels": {}, "interfaces": [], "removed_interfaces": [],
                            "deleted": [], "deletions_held": {}, "changed": False, "error": failed[name].error}
            continue
        outcomes, label_patches = reconciled[name]
        passed[name] = {"services": [o.as_dict() for o in outcomes], "pod_labels": label_patches, **settled[name],
                        "changed": bool(label_patches) or any(o.changed for o in outcomes) or settled[name]["changed"],
                        "error": None}
    return passed
