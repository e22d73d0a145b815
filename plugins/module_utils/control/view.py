"""One pass's view of the federation's dtServices and dtDomains, shared by its steps.

Owns the reads a ``NodeReconciler`` pass makes of other nodes' objects and the dtService
writes that keep those reads current: each node's dtServices and dtDomains are taken once
per pass from the module call's listings (``kube.cluster.Listing``: one LIST per cluster,
shared by every node and step of the call), a written object replaces its listed copy, and
``update_service`` writes optimistically (the object's ``resourceVersion``; a Conflict means
another provisioner wrote first, so it re-reads and tries again, up to ``MAX_ATTEMPTS``).
Also finds a domain member's connection details, and asks once per pass which UDP ports
other processes hold where the node's address lives (when the pass runs on the node's
machine and so can see them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from http import HTTPStatus

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import (
    Cluster,
    Conflict,
    NodeRef,
    SharedObject,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan

MAX_ATTEMPTS = 20


class ServiceMissing(plan.PlanError):
    """The dtService to write is gone: deleted before or while it was written."""

    def __init__(self, *, node: NodeRef, name: str) -> None:
        super().__init__(Status.SERVER_UNREACHABLE, f"dtService {name} is missing on node {node.name}")


class PassView:
    """The dtServices and dtDomains of the federation's nodes as one pass of ``node`` saw them."""

    def __init__(self, *, cluster: Cluster, node: NodeRef, federation: Mapping[str, NodeRef],
                 ports_in_use: Callable[[], Collection[int]] | None = None) -> None:
        self.cluster = cluster
        self.node = node
        self.federation = federation
        self._services: dict[str, list[dict]] = {}
        self._domains: dict[str, dict[str, dict]] = {}
        self._ports_in_use = ports_in_use
        self._ports_seen: Collection[int] | None = None

    def ports_in_use(self) -> Collection[int]:
        """The UDP ports something else than the project's links holds on the node's address
        (read at most once per pass); none known when the pass does not run on the node's machine."""
        if self._ports_seen is None:
            self._ports_seen = self._ports_in_use() if self._ports_in_use else ()
        return self._ports_seen

    def member_node(self, member: contract.Member) -> NodeRef:
        node = self.federation.get(member.name)
        if node is None:
            raise plan.PlanError(Status.FAILED, f"member {member.name} of the domain has no connection "
                                 "details (not a host of this inventory)")
        return node

    # -- dtServices -----------------------------------------------------------------------
    def services_of(self, node: NodeRef) -> list[dict]:
        """The dtServices on ``node``: the pass's own node's as copies, another node's as the
        listing's own objects, which every write here replaces and never changes in place (the
        hub of 100 clients was decoded again for each of them)."""
        if node.name not in self._services:
            self._services[node.name] = self.cluster.list_services(node, shared=node.name != self.node.name)
        return self._services[node.name]

    def service_on(self, node: NodeRef, name: str) -> dict | None:
        return next((s for s in self.services_of(node) if s["metadata"]["name"] == name), None)

    def remember(self, node: NodeRef, service: dict) -> None:
        """``service`` as written: its listed copy is replaced."""
        items = self.services_of(node)
        items[:] = [s for s in items if s["metadata"]["name"] != service["metadata"]["name"]] + [service]

    def forget_services(self, node: NodeRef | None = None) -> None:
        """Drop the listed dtServices of ``node`` (of every node when None): listed again, from
        the API server, on next use."""
        self.cluster.forget_services()
        if node is None:
            self._services.clear()
        else:
            self._services.pop(node.name, None)

    def update_service(self, node: NodeRef, name: str, desired: Callable[[dict], dict],
                       shared: SharedObject | None = None) -> dict:
        """Write ``desired(current)`` when it differs, re-reading on Conflict. With ``shared``
        (its lock held), start from the newest copy another thread wrote or read."""
        # Check mode writes nothing: a dry run's answer is no copy to build on.
        shared = None if self.cluster.dry_run else shared
        current = (shared.latest if shared else None) or self.service_on(node, name)
        for _attempt in range(MAX_ATTEMPTS):
            if current is None:
                raise ServiceMissing(node=node, name=name)
            body = desired(current)
            if body == current:
                return current
            try:
                current = self.cluster.replace_service(node, body)
                self.remember(node, current)
                return current
            except ApiError as error:
                if error.status == HTTPStatus.NOT_FOUND:
                    raise ServiceMissing(node=node, name=name) from error
                raise
            except Conflict:
                # Re-read this object first, then (lazily) everything else: a client that
                # claimed an address in it is then also seen as live.
                self.forget_services()
                current = self.cluster.get_service(node, name)
            finally:
                if shared:
                    shared.latest = current
        raise plan.PlanError(Status.FAILED, f"dtService {name} on {node.name} kept changing; gave up after "
                             f"{MAX_ATTEMPTS} attempts")

    def update_shared_service(self, node: NodeRef, name: str, change: Callable[[dict], dict]) -> dict:
        """``update_service`` of a dtService that many threads of the call write (a hub's
        table): ``change`` goes in one write with the changes the others queued meanwhile
        (``SharedObject.write_together``)."""
        shared = self.cluster.shared_service(node, name)

        def write(desired: Callable[[dict], dict]) -> dict:
            return self.update_service(node, name, desired, shared=shared)
        return shared.write_together(change, write=write)

    # -- dtDomains ------------------------------------------------------------------------
    def domain_object(self, node: NodeRef, name: str, *, fresh: bool = False) -> dict | None:
        """A dtDomain of a node, from one LIST of the node's dtDomains per pass (``fresh``
        lists again). Shared with the call's other threads: change only a copy."""
        if fresh or node.name not in self._domains:
            self._domains[node.name] = {d["metadata"]["name"]: d for d in self.cluster.list_domains(node, fresh=fresh)}
        return self._domains[node.name].get(name)

    def remember_domain(self, node: NodeRef, domain: dict) -> None:
        """``domain`` as written (read through ``domain_object`` before): its listed copy is replaced."""
        self._domains[node.name][domain["metadata"]["name"]] = domain
