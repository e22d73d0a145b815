"""API access for the provisioner: one connection per federation node's API server.

Owns every call to a Kubernetes API server (reads, optimistic writes, Events). The rest of
the core sees plain dicts. Writes carry the object's ``resourceVersion`` so that two
provisioners racing on the same object get a 409 instead of overwriting each other, and a
write happens only when the object really differs, so a converged federation sees reads only.

Also owns one module call's reads (``Listing``): the threads of a call share its
``Connections``, and with them one LIST of each collection. dtServices and dtDomains, the
project's own kinds, are listed once per cluster (the provisioner's ClusterRole
``dtservice-provisioner-reader`` lets it read them in every namespace; without it, once per
namespace); Pods once per Kubernetes node as its kubelet where a node names the kubelet's
kubeconfig (``Cluster.list_pods``), else once per namespace; key Secrets, all in the
cluster's ``KEYS_NAMESPACE``, once per cluster. The call's own writes keep the listings
current, so its later steps see them without reading again; a read that must see other
writers' changes (after a Conflict, a port checked again) lists again.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    API_VERSION,
    DOMAINS,
    EVENT_SOURCE,
    KEY_SECRET_LABEL,
    KEYS_NAMESPACE,
    SERVICE_KIND,
    SERVICES,
    Domain,
    NodeRef,
    key_secret_name,
    key_secret_owner,
    legacy_key_secret_name,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClient, ApiClients, ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import pods as pod_rules


class Conflict(Exception):
    """Somebody else wrote the object since it was read (HTTP 409): re-read and retry."""


class RightsRefused(ApiError):
    """A write into a node's namespace refused for want of rights (401, 403: its RoleBinding
    gone, the credentials expired), with that ``namespace``: for a pass of that node, the
    node's failure rather than one object's. Every read a pass needs is of the whole cluster,
    so a write is where a node's lost rights show."""

    def __init__(self, error: ApiError, *, namespace: str) -> None:
        super().__init__(status=error.status, reason=error.reason, message=error.message)
        self.namespace = namespace


T = TypeVar("T")


@dataclass
class _Change:
    """One thread's change to a SharedObject, waiting to be written with others."""

    change: Callable[[dict], dict]
    written: dict = field(default_factory=dict)
    error: BaseException | None = None
    done: bool = False


@dataclass
class SharedObject:
    """The newest copy of one object among threads that take turns writing it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: dict | None = None
    _waiting: list[_Change] = field(default_factory=list)
    _waiting_lock: threading.Lock = field(default_factory=threading.Lock)
    _derived: tuple[object, Any] | None = None

    def derived(self, source: object, make: Callable[[Any], T]) -> T:
        """``make(source)``, made again only for another ``source`` object: what the threads
        writing this object in turn each derive from the same copy of it (a hub's table
        indexed once for the claims of its 100 clients, not once for each). ``source`` is
        kept with it, so that no other object takes its place at the same identity."""
        kept = self._derived
        if kept is None or kept[0] is not source:
            kept = self._derived = (source, make(source))
        return kept[1]

    def write_together(self, change: Callable[[dict], dict], *,
                       write: Callable[[Callable[[dict], dict]], dict]) -> dict:
        """``change`` written with the changes other threads queued while the object was being
        written: the thread that gets the lock next makes them one write (``write(desired)``,
        a read-modify-write that may call ``desired`` again after a Conflict) and hands each
        its answer. (At 100 joiners, 99 claims on one hub's table were 99 PUTs of a growing
        object, one after another.) A change that raises is left out and its error goes back
        to its own caller only; a write that fails fails every change it carried."""
        mine = _Change(change)
        with self._waiting_lock:
            self._waiting.append(mine)
        with self.lock:
            if not mine.done:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                try:
                    written = write(lambda current: _applied(batch, current))
                except BaseException as problem:  # noqa: BLE001 - raised by every change it carried
                    for queued in batch:
                        queued.error = queued.error or problem
                else:
                    for queued in batch:
                        queued.written = written
                for queued in batch:
                    queued.done = True
        if mine.error is not None:
            raise mine.error
        return mine.written


def _applied(batch: list[_Change], current: dict) -> dict:
    """``current`` with each change of ``batch`` that does not raise (which keeps its error)."""
    body = current
    for queued in batch:
        try:
            body = queued.change(body)
        except Exception as problem:  # noqa: BLE001 - it stays with the change that raised it
            queued.error = problem
        else:
            queued.error = None
    return body


def _text_of(entry: list) -> str:
    """A kept object's JSON text, written on first need. The object is never changed in
    place, so threads that both write it out store the same text."""
    if entry[1] is None:
        entry[1] = json.dumps(entry[0])
    return entry[1]


class Listing:
    """One collection of one cluster as a module call read it: listed on first use (the whole
    cluster at once when ``cluster_path`` is given and the provisioner may, else the namespace
    asked for; without a ``namespace_path``, a refused ``cluster_path`` is the caller's), then
    kept current with the call's own writes. Callers get copies, or with
    ``shared`` the kept objects themselves, which nobody may change in place. ``group`` files
    an object under the namespace it is asked for by (by default its own).

    Namespaces are listed side by side: a pass over many nodes would otherwise wait for their
    LISTs one after another. A write waits for a LIST of its namespace in flight, whose answer
    may predate it; a LIST that a ``forget`` overtook answers its caller but is not kept."""

    def __init__(self, *, api: ApiClient, namespace_path: Callable[[str], str] | None,
                 cluster_path: str | None = None,
                 query: dict[str, str] | None = None, dry_run: bool = False,
                 group: Callable[[dict], str] = lambda obj: obj["metadata"]["namespace"]) -> None:
        self._api = api
        self._group = group
        self._namespace_path = namespace_path
        self._cluster_path = cluster_path
        self._query = query
        self._dry_run = dry_run
        self._lock = threading.Lock()  # guards the fields below, never held over a request
        self._gates: dict[str | None, threading.Lock] = {}  # one LIST at a time per namespace (None: all)
        self._generation = 0
        self._whole = False
        # namespace -> name -> [the object, its JSON text once a copy was asked for]: a caller
        # gets its own copy from json.loads, five times faster than copy.deepcopy (deep copies
        # were half of a pass's time at 100 nodes), or the object itself when it only reads
        # (100 dtDomains of 20 kB each, never copied, are not written out as text).
        self._by_namespace: dict[str, dict[str, list]] = {}

    def items(self, namespace: str, *, shared: bool = False) -> list[dict]:
        """The namespace's objects: copies, or (``shared``) the kept ones, only to be read."""
        kept = self._kept(namespace)
        if kept is None:
            with self._gate(namespace):
                kept = self._kept(namespace)
                if kept is None:
                    kept = self._listed(namespace)
        return [obj for obj, _text in kept] if shared else [json.loads(_text_of(entry)) for entry in kept]

    def _kept(self, namespace: str) -> list[list] | None:
        """The namespace's items as kept, when they are (a LIST of it has ended)."""
        with self._lock:
            if self._whole or namespace in self._by_namespace:
                return list(self._by_namespace.get(namespace, {}).values())
            return None

    def _listed(self, namespace: str) -> list[list]:
        """The namespace's items from a LIST, kept unless a ``forget`` overtook it (its gate held)."""
        with self._lock:
            cluster_path, generation = self._cluster_path, self._generation
        answer, whole = self._load(namespace, cluster_path)
        with self._lock:
            if generation == self._generation:
                self._keep(namespace, answer, whole=whole)
                return list(self._by_namespace.get(namespace, {}).values())
        # Forgotten while it was listed: an answer for this caller only.
        return [[item, None] for item in answer if not whole or self._group(item) == namespace]

    def _gate(self, namespace: str) -> threading.Lock:
        with self._lock:
            return self._gates.setdefault(None if self._cluster_path is not None else namespace, threading.Lock())

    def _list(self, path: str) -> list[dict]:
        try:
            return self._api.request("GET", path, query=self._query)["items"]
        except ApiError as error:
            # Check mode on a new federation: the CRD is not installed (404) or the
            # provisioner's binding not made (403) yet, so nothing of the kind exists. (A
            # refused cluster-wide LIST is the caller's: it lists the namespace instead.)
            if self._dry_run and (error.status == 404 or (error.status == 403 and path != self._cluster_path)):
                return []
            raise

    def _load(self, namespace: str, cluster_path: str | None) -> tuple[list[dict], bool]:
        """The items of the whole cluster (``cluster_path``; True) or else of ``namespace``
        (False), from the API server."""
        if cluster_path is not None:
            try:
                return self._list(cluster_path), True
            except ApiError as error:
                if error.status != 403 or self._namespace_path is None:
                    raise
                with self._lock:
                    self._cluster_path = None  # not granted cluster-wide: one namespace at a time
        if self._namespace_path is None:
            raise TypeError("a Listing needs a cluster_path or a namespace_path")
        return self._list(self._namespace_path(namespace)), False

    def _keep(self, namespace: str, items: list[dict], *, whole: bool) -> None:
        if whole:
            self._whole = True
            for item in items:
                self._by_namespace.setdefault(self._group(item), {})[item["metadata"]["name"]] = [item, None]
        else:
            self._by_namespace[namespace] = {item["metadata"]["name"]: [item, None] for item in items}

    def put(self, obj: dict) -> None:
        """``obj`` as the API server answered a write of it."""
        namespace = self._group(obj)
        with self._gate(namespace), self._lock:
            if self._whole or namespace in self._by_namespace:
                text = json.dumps(obj)  # the writer goes on with obj: what is kept is a copy
                self._by_namespace.setdefault(namespace, {})[obj["metadata"]["name"]] = [json.loads(text), text]

    def drop(self, namespace: str, name: str) -> None:
        with self._gate(namespace), self._lock:
            self._by_namespace.get(namespace, {}).pop(name, None)

    def forget(self) -> None:
        """Listed again on next use: what other writers changed is seen."""
        with self._lock:
            self._generation += 1
            self._whole = False
            self._by_namespace.clear()


@dataclass
class Connections:
    """One API client per (kubeconfig, context), made on first use and shared by threads,
    and the listings of the call (``Listing``)."""

    _clients: ApiClients = field(default_factory=ApiClients)
    _shared: dict[tuple, SharedObject] = field(default_factory=dict)
    _shared_guard: threading.Lock = field(default_factory=threading.Lock)
    _listings: dict[tuple, Listing] = field(default_factory=dict)
    # id of a dtDomain object -> the object (so that its id is not reused) and its Domain.
    _domains: dict[int, tuple[dict, Domain]] = field(default_factory=dict)
    # (kubelet kubeconfig, Kubernetes node) whose pods that kubelet was not allowed to list.
    _kubelets_refused: set[tuple[str, str]] = field(default_factory=set)

    def domain(self, obj: dict) -> Domain:
        """``obj`` read as a Domain, once per object for the threads sharing these connections:
        a listed dtDomain is shared by them and never changed in place, and each node of a pass
        read its copy and the home copy twice (a domain of 100 members, 400 times for 100 nodes)."""
        with self._shared_guard:
            kept = self._domains.get(id(obj))
        if kept is not None and kept[0] is obj:
            return kept[1]
        domain = Domain.from_object(obj)
        with self._shared_guard:
            self._domains[id(obj)] = (obj, domain)
        return domain

    def shared(self, *key: object) -> SharedObject:
        """One SharedObject per key for the threads sharing these connections."""
        with self._shared_guard:
            return self._shared.setdefault(key, SharedObject())

    def listing(self, node: NodeRef, kind: str, make: Callable[[ApiClient], Listing]) -> Listing:
        """The call's Listing of ``kind`` on ``node``'s cluster, made by ``make`` on first use."""
        key = (node.kubeconfig, node.context, kind)
        with self._shared_guard:
            if key not in self._listings:
                self._listings[key] = make(self.api(node))
            return self._listings[key]

    def kubelet_listing(self, kubeconfig: str, kubelet: str) -> Listing | None:
        """The call's Listing of the pods on Kubernetes node ``kubelet``, in every namespace,
        read as that node's kubelet (``kubeconfig``): the one LIST of pods the Node authorizer
        allows it. None once the API server refused it in this call."""
        key = (kubeconfig, None, f"pods on {kubelet}")
        with self._shared_guard:
            if (kubeconfig, kubelet) in self._kubelets_refused:
                return None
            if key not in self._listings:
                self._listings[key] = Listing(api=self._clients.get(kubeconfig, None), namespace_path=None,
                                              cluster_path="/api/v1/pods",
                                              query={"fieldSelector": f"spec.nodeName={kubelet}"})
            return self._listings[key]

    def kubelet_refused(self, kubeconfig: str, kubelet: str) -> None:
        with self._shared_guard:
            self._kubelets_refused.add((kubeconfig, kubelet))

    def forget(self, kind: str) -> None:
        """Every cluster's listing of ``kind`` is listed again on next use."""
        with self._shared_guard:
            listings = [listing for key, listing in self._listings.items() if key[2] == kind]
        for listing in listings:
            listing.forget()

    def api(self, node: NodeRef) -> ApiClient:
        return self._clients.get(node.kubeconfig, node.context)


def _custom(node: NodeRef, plural: str, name: str | None = None, *, status: bool = False) -> str:
    path = f"/apis/{API_VERSION}/namespaces/{node.namespace}/{plural}"
    return path + (f"/{name}" if name else "") + ("/status" if status else "")


def _core(node: NodeRef, kind: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{node.namespace}/{kind}" + (f"/{name}" if name else "")


def _keys(name: str | None = None) -> str:
    return f"/api/v1/namespaces/{KEYS_NAMESPACE}/secrets" + (f"/{name}" if name else "")


class Cluster:
    """The provisioner's view of the federation's API servers."""

    def shared_service(self, node: NodeRef, name: str) -> SharedObject:
        """A dtService that many nodes' threads write (a server's ``peers`` table): holding its
        lock around a read-modify-write, starting from the newest copy any of them has, they
        take turns instead of failing each other's writes with conflicts."""
        return self.connections.shared(node.kubeconfig, node.context, node.namespace, "dtservices", name)

    def __init__(self, *, connections: Connections | None = None, dry_run: bool = False) -> None:
        self.connections = connections or Connections()
        # Check mode: every write is sent with dryRun=All, so the API server validates it
        # and nothing is stored.
        self.dry_run = dry_run
        self.writes = 0

    def _get(self, node: NodeRef, path: str, **query: str) -> dict:
        return self.connections.api(node).request("GET", path, query=query or None)

    def _get_or_none(self, node: NodeRef, path: str) -> dict | None:
        try:
            return self._get(node, path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    # -- reads ----------------------------------------------------------------------------
    def _listing(self, node: NodeRef, kind: str) -> Listing:
        def make(api: ApiClient) -> Listing:
            if kind in (SERVICES, DOMAINS):
                return Listing(api=api, namespace_path=lambda ns: f"/apis/{API_VERSION}/namespaces/{ns}/{kind}",
                               cluster_path=f"/apis/{API_VERSION}/{kind}", dry_run=self.dry_run)
            if kind == "secrets":
                # Every key Secret of the cluster in one LIST, filed under its dtService's
                # namespace (the first part of its name). Where the provisioner may not list
                # them (a dry run before the Role is made) each asks the same LIST, and none.
                return Listing(api=api, namespace_path=lambda _namespace: _keys(), cluster_path=_keys(),
                               dry_run=self.dry_run, query={"labelSelector": KEY_SECRET_LABEL},
                               group=lambda secret: key_secret_owner(secret["metadata"]["name"])[0])
            return Listing(api=api, namespace_path=lambda ns: f"/api/v1/namespaces/{ns}/{kind}", dry_run=self.dry_run)
        return self.connections.listing(node, kind, make)

    def list_services(self, node: NodeRef, *, shared: bool = False) -> list[dict]:
        """The node's dtServices: copies, or (``shared``) the listing's own objects, only to be
        read (a hub of 100 clients is read by each of their agents)."""
        return self._listing(node, SERVICES).items(node.namespace, shared=shared)

    def forget_services(self) -> None:
        """The dtServices of every cluster are listed again on next use."""
        self.connections.forget(SERVICES)

    def get_service(self, node: NodeRef, name: str) -> dict | None:
        return self._get_or_none(node, _custom(node, SERVICES, name))

    def list_domains(self, node: NodeRef, *, fresh: bool = False) -> list[dict]:
        """The node's dtDomains (``fresh``: as the API server holds them now). The objects are
        the listing's own, shared by the call's threads: read them, and change only a copy
        (a domain of 100 members is read a few times for every node of a pass)."""
        if fresh:
            self.connections.forget(DOMAINS)
        return self._listing(node, DOMAINS).items(node.namespace, shared=True)

    def get_domain(self, node: NodeRef, name: str) -> dict | None:
        return self._get_or_none(node, _custom(node, DOMAINS, name))

    def domain(self, obj: dict) -> Domain:
        """A dtDomain object (as listed or written, not to be changed afterwards) as a Domain."""
        return self.connections.domain(obj)

    def list_pods(self, node: NodeRef) -> dict[str, dict]:
        """The pods of the node's namespace, by name: the listing's own objects, only to be read
        (a pass reads them three times for each node: reconcile, labels, interfaces).

        Where the node names its kubelet's kubeconfig, those on the Kubernetes nodes it serves,
        as their kubelet listed them (``Connections.kubelet_listing``: a converged pass's pod
        reads then grow with the Kubernetes nodes, not the namespaces), as long as they hold a
        pod for each of the node's dtServices. Otherwise, or when the kubelet may not list them,
        all of the namespace's, from the provisioner's LIST of it: a pod on another Kubernetes
        node, or none, is judged as it is (``PodElsewhere``, ``WaitingForPod``)."""
        served = self._served_pods(node)
        if served is not None and all(pod_rules.select(served, selector) is not None
                                      for selector in self._pod_selectors(node)):
            return served
        return {pod["metadata"]["name"]: pod for pod in self._listing(node, "pods").items(node.namespace, shared=True)}

    def _pod_selectors(self, node: NodeRef) -> set[str]:
        return {selector for service in self.list_services(node, shared=True)
                if (selector := (service.get("spec") or {}).get("podSelector"))}

    def _served_pods(self, node: NodeRef) -> dict[str, dict] | None:
        """The namespace's pods on the node's Kubernetes nodes, as their kubelet lists them;
        None without the kubelet's kubeconfig, or when it may not list the pods of one of them
        (it is another Kubernetes node's)."""
        if not node.kubelet_kubeconfig:
            return None
        pods: dict[str, dict] = {}
        for kubelet in node.served_nodes:
            listing = self.connections.kubelet_listing(node.kubelet_kubeconfig, kubelet)
            if listing is None:
                return None
            try:
                items = listing.items(node.namespace, shared=True)
            except ApiError as error:
                if error.status not in (401, 403):
                    raise
                self.connections.kubelet_refused(node.kubelet_kubeconfig, kubelet)
                return None
            pods.update((pod["metadata"]["name"], pod) for pod in items)
        return pods

    def key_secrets(self, node: NodeRef) -> dict[str, dict]:
        """The key Secrets of the node's dtServices, by dtService name, from the call's one
        LIST of its cluster's ``KEYS_NAMESPACE`` (labelled ``KEY_SECRET_LABEL``): the listing's
        own objects, only to be read (a write starts from a copy, ``control/secrets.py``)."""
        return {key_secret_owner(secret["metadata"]["name"])[1]: secret
                for secret in self._listing(node, "secrets").items(node.namespace, shared=True)}

    def get_key_secret(self, node: NodeRef, service: str) -> dict | None:
        """The key Secret of the node's dtService ``service`` as the API server holds it now."""
        return self._get_or_none(node, _keys(key_secret_name(node.namespace, service)))

    def legacy_key_secret(self, node: NodeRef, service: str) -> dict | None:
        """The key Secret an earlier release kept in the node's namespace, if it is still there
        (in a dry run also None where the provisioner may not read it yet: a new federation)."""
        try:
            return self._get_or_none(node, _core(node, "secrets", legacy_key_secret_name(service)))
        except ApiError as error:
            if self.dry_run and error.status == 403:
                return None
            raise

    # -- writes ---------------------------------------------------------------------------
    def _write(self, node: NodeRef, method: str, path: str, body: Any = None, *, kind: str | None,
               content_type: str = "application/json", missing_ok: bool = False) -> dict:
        """One write; the call's listing of ``kind`` (None: none) follows it (a dry run stores nothing)."""
        query = {"dryRun": "All"} if self.dry_run else None
        try:
            result = self.connections.api(node).request(method, path, body=body, query=query,
                                                        content_type=content_type)
        except ApiError as error:
            if error.status == 409:
                if kind is not None:
                    self.connections.forget(kind)
                raise Conflict(error.reason) from None
            if error.status in (401, 403) and f"/namespaces/{node.namespace}/" in path:
                raise RightsRefused(error, namespace=node.namespace) from None
            if not (missing_ok and error.status == 404):
                raise
            result = {}
        else:
            self.writes += 1
        if not self.dry_run and kind is not None:
            if method == "DELETE":
                self._listing(node, kind).drop(node.namespace, path.rsplit("/", 1)[1])
            else:
                self._listing(node, kind).put(result)
        return result

    def replace_service(self, node: NodeRef, body: dict) -> dict:
        """PUT with the body's resourceVersion: a Conflict when the object moved on."""
        return self._write(node, "PUT", _custom(node, SERVICES, body["metadata"]["name"]), body, kind=SERVICES)

    def patch_service_annotations(self, node: NodeRef, name: str, annotations: dict[str, str | None]) -> dict:
        """A merge patch of the dtService's annotations (None removes one); no other field."""
        return self._write(node, "PATCH", _custom(node, SERVICES, name), {"metadata": {"annotations": annotations}},
                           kind=SERVICES, content_type="application/merge-patch+json")

    def delete_service(self, node: NodeRef, name: str) -> None:
        self._write(node, "DELETE", _custom(node, SERVICES, name), kind=SERVICES, missing_ok=True)

    def replace_service_status(self, node: NodeRef, body: dict) -> dict:
        return self._write(node, "PUT", _custom(node, SERVICES, body["metadata"]["name"], status=True), body,
                           kind=SERVICES)

    def replace_domain_status(self, node: NodeRef, body: dict) -> dict:
        return self._write(node, "PUT", _custom(node, DOMAINS, body["metadata"]["name"], status=True), body,
                           kind=DOMAINS)

    def create_secret(self, node: NodeRef, body: dict) -> dict:
        """A key Secret (its body placed in ``KEYS_NAMESPACE``)."""
        return self._write(node, "POST", _keys(), body, kind="secrets")

    def replace_secret(self, node: NodeRef, body: dict) -> dict:
        """PUT of a key Secret with the body's resourceVersion: a Conflict when it moved on."""
        return self._write(node, "PUT", _keys(body["metadata"]["name"]), body, kind="secrets")

    def annotate_service(self, node: NodeRef, name: str, annotations: dict[str, str | None]) -> dict:
        """Merge the annotations (None removes one) into a dtService's metadata."""
        return self._write(node, "PATCH", _custom(node, SERVICES, name), {"metadata": {"annotations": annotations}},
                           kind=SERVICES, content_type="application/merge-patch+json")

    def delete_secret(self, node: NodeRef, service: str) -> None:
        """The key Secret of the node's dtService ``service``."""
        self._write(node, "DELETE", _keys(key_secret_name(node.namespace, service)), kind="secrets",
                    missing_ok=True)

    def delete_legacy_key_secret(self, node: NodeRef, service: str) -> None:
        self._write(node, "DELETE", _core(node, "secrets", legacy_key_secret_name(service)), kind=None,
                    missing_ok=True)

    def patch_pod_labels(self, node: NodeRef, pod: str, labels: dict[str, str | None]) -> None:
        patched = self._write(node, "PATCH", _core(node, "pods", pod), {"metadata": {"labels": labels}},
                              kind="pods", content_type="application/merge-patch+json")
        # The kubelet's listing of the pod's Kubernetes node follows too (the namespace's did).
        kubelet = (patched.get("spec") or {}).get("nodeName")
        if node.kubelet_kubeconfig and kubelet and not self.dry_run:
            listing = self.connections.kubelet_listing(node.kubelet_kubeconfig, kubelet)
            if listing is not None:
                listing.put(patched)

    def record_event(self, node: NodeRef, *, service: dict, reason: str, message: str,
                     warning: bool) -> None:
        """A core/v1 Event on the dtService, as `kubectl describe` lists them."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = service["metadata"]
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": node.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": SERVICE_KIND, "name": meta["name"],
                               "namespace": node.namespace, "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
            "source": {"component": EVENT_SOURCE}, "reportingComponent": EVENT_SOURCE,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._write(node, "POST", _core(node, "events"), body, kind=None)
