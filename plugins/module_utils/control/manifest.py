"""Applying declared objects (CRDs, RBAC, dtDomains, declared dtServices) to API servers, or
deleting them.

Owns the "present" step of deploy and the "absent" step of teardown: compare first, write
only what differs. Each cluster is read with one LIST per collection (of the whole cluster
for a kind wanted in several namespaces, where the credentials may; else per namespace),
every object is compared with what is live (the manifest must be contained in the live
object; the server's defaults and fields other writers own do not count), and only a
differing object is sent, as a server-side apply under the provisioner's field manager. A
converged federation therefore sees reads only.
Cluster-wide objects (CRDs, ClusterRoles) carry the ``managed-by`` label, so that their LIST
finds ours among all of the cluster's; namespaced ones are listed whole in a node namespace
and stay as the user wrote them (the seed's ``kubectl describe`` shows no labels). Deleting
sends one DELETE per listed object that is still live.

One call may carry both the kinds and rights and the project's objects that need them: it
applies every cluster's Namespaces first, then CRDs and RBAC (a Role may live in one of those
namespaces), and dtDomains and dtServices only once those are done (deleting, the other way
round).

In check mode on a federation where nothing exists yet, a collection the API server does not
serve (its CRD is not installed: 404) or does not let the provisioner read (its binding is
not made yet: 403) holds nothing: each of its objects is shown as created, without a dry-run
write, which the server would refuse for the same reason; and so is an object whose namespace
the call would make first (the dry run's write finds no such namespace: 404).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    API_VERSION,
    DOMAIN_KIND,
    DOMAINS,
    FIELD_MANAGER,
    MANAGED_BY,
    SERVICE_KIND,
    SERVICES,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClient, ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.side_by_side import side_by_side

# Writes to one API server in flight at once (each thread has its own connection pool): the
# 100 dtDomains or dtServices of a federation of 100 nodes took 1.5 to 1.8 s one after another.
# 16, as many as a pass's threads: three first deploys of 100 nodes on one bed, against 8,
# 7.8, 7.2 and 7.8 s against 9.2 (the bed's first, its kinds new), 8.5 and 7.5 s.
PARALLEL_WRITES = 16
# LISTs of one stage's kinds sent at once.
PARALLEL_LISTS = 8
# How often a new CustomResourceDefinition is looked at until it is Established.
ESTABLISHED_POLL_SECONDS = 0.1
SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())

# kind -> (API group/version path, plural, namespaced): the kinds deploy applies.
KINDS = {
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "Namespace": ("/api/v1", "namespaces", False),
    DOMAIN_KIND: (f"/apis/{API_VERSION}", DOMAINS, True),
    SERVICE_KIND: (f"/apis/{API_VERSION}", SERVICES, True),
}


# The project's own kinds: applied after, and deleted before, what they need (their CRDs, the
# provisioner's rights to them).
OWN_KINDS = frozenset({DOMAIN_KIND, SERVICE_KIND})
# Seconds the project's objects may be refused after this call granted rights:
# an API server's authorizer learns of a new binding through its own watch, a moment later.
RIGHTS_SETTLE_SECONDS = 10.0


class ManifestError(ValueError):
    """A manifest this step cannot apply (unknown kind, no name, no namespace)."""


def in_namespaces(objects: list[Mapping[str, Any]], namespaces: list[str] | None) -> list[dict[str, Any]]:
    """Each object once per namespace (``None``: the objects as they are)."""
    if namespaces is None:
        return [dict(obj) for obj in objects]
    for obj in objects:
        if (obj.get("metadata") or {}).get("namespace"):
            raise ManifestError(f"{obj.get('kind')} {obj['metadata'].get('name')} has a metadata.namespace; "
                                "objects given with namespaces must not")
    return [{**obj, "metadata": {**obj.get("metadata", {}), "namespace": namespace}}
            for namespace in namespaces for obj in objects]


def check_manifests(objects: Sequence[Mapping[str, Any]]) -> None:
    """Raise ManifestError for the first manifest that cannot be applied, before any write."""
    for obj in objects:
        Collection.of(obj)


def contains(live: Any, wanted: Any) -> bool:
    """True when every field of ``wanted`` is in ``live`` with the same value; lists must
    match item by item (an applied list is owned whole)."""
    if live == wanted:
        # Most of a converged object (a domain's members, 100 copies of it): one comparison
        # in C instead of a walk of every field.
        return True
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(k in live and contains(live[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(contains, live, wanted))
    return live == wanted


def project(live: Any, wanted: Any) -> Any:
    """The part of ``live`` that ``wanted`` speaks about: what a diff should show."""
    if isinstance(wanted, Mapping) and isinstance(live, Mapping):
        return {k: project(live[k], v) for k, v in wanted.items() if k in live}
    if isinstance(wanted, list) and isinstance(live, list):
        return [project(item, w) for item, w in zip(live, wanted, strict=False)] + live[len(wanted):]
    return live


def labelled(obj: Mapping[str, Any], collection: Collection) -> dict[str, Any]:
    """``obj``, with the project's label when it is cluster-wide; ``obj`` itself is left as it is."""
    if collection.namespace is not None:
        return dict(obj)
    metadata = obj.get("metadata") or {}
    return {**obj, "metadata": {**metadata, "labels": {**(metadata.get("labels") or {}), **MANAGED_BY}}}


@dataclass(frozen=True)
class Collection:
    base: str
    plural: str
    namespace: str | None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Collection:
        kind = obj.get("kind")
        if kind not in KINDS:
            raise ManifestError(f"kind {kind!r} is not one deploy applies; known: {sorted(KINDS)}")
        if not (obj.get("metadata") or {}).get("name"):
            raise ManifestError(f"a {kind} manifest has no metadata.name")
        base, plural, namespaced = KINDS[kind]
        namespace = obj["metadata"].get("namespace") if namespaced else None
        if namespaced and not namespace:
            raise ManifestError(f"{kind} {obj['metadata']['name']} needs metadata.namespace")
        return cls(base=base, plural=plural, namespace=namespace)

    def path(self, name: str | None = None) -> str:
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{self.base}{scope}/{self.plural}" + (f"/{name}" if name else "")


@dataclass
class Applied:
    """What applying one cluster's manifests did."""

    changed: list[str] = field(default_factory=list)
    diffs: list[dict[str, Any]] = field(default_factory=list)


def _live(api: ApiClient, wanted: list[tuple[Collection, dict[str, Any]]], *,
          dry_run: bool) -> dict[Collection, dict[str, dict] | None]:
    """Each collection's live objects by name; in a dry run None for one the server does not
    serve or let us read yet (see the module's docstring). A kind wanted in several namespaces
    is read with one LIST of the whole cluster (selected by name when every object of it has
    the same name) where the credentials may, else with one LIST per namespace."""
    collections = list(dict.fromkeys(collection for collection, _body in wanted))
    live: dict[Collection, dict[str, dict] | None] = {}
    spread: dict[tuple[str, str], list[Collection]] = {}
    for collection in collections:
        if collection.namespace is not None:
            spread.setdefault((collection.base, collection.plural), []).append(collection)

    def whole_cluster(kind: tuple[str, str]) -> dict[Collection, dict[str, dict]]:
        """The kind's objects in every namespace wanted, from one LIST (none where it is refused)."""
        base, plural = kind
        members = spread[kind]
        names = {body["metadata"]["name"] for collection, body in wanted if collection in members}
        query = {"fieldSelector": f"metadata.name={next(iter(names))}"} if len(names) == 1 else None
        try:
            items = api.request("GET", f"{base}/{plural}", query=query)["items"]
        except ApiError as error:
            if error.status in (403, 404):
                return {}  # not granted cluster-wide (or not served): each namespace below says which
            raise
        by_namespace: dict[str, dict[str, dict]] = {}
        for item in items:
            by_namespace.setdefault(item["metadata"]["namespace"], {})[item["metadata"]["name"]] = item
        return {collection: by_namespace.get(collection.namespace or "", {}) for collection in members}

    def listing(collection: Collection) -> dict[str, dict] | None:
        query = {"labelSelector": SELECTOR} if collection.namespace is None else None
        try:
            items = api.request("GET", collection.path(), query=query)["items"]
        except ApiError as error:
            if dry_run and error.status in (403, 404):
                return None
            raise
        return {item["metadata"]["name"]: item for item in items}

    # Side by side: the first LIST of a kind made a moment before waits a second in the API
    # server, and a first deploy waited for its two new kinds one after the other.
    for found in side_by_side([kind for kind, members in spread.items() if len(members) >= 2], whole_cluster,
                              at_most=PARALLEL_LISTS):
        live.update(found)
    rest = [collection for collection in collections if collection not in live]
    return {**live, **dict(zip(rest, side_by_side(rest, listing, at_most=PARALLEL_LISTS), strict=True))}


def _label(body: Mapping[str, Any], collection: Collection) -> str:
    return f"{body['kind']} {collection.namespace + '/' if collection.namespace else ''}{body['metadata']['name']}"


def _fields(body: Mapping[str, Any]) -> dict[str, Any]:
    # Items of a LIST of built-in kinds carry no apiVersion and kind: the collection says them.
    return {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}


def apply_manifests(*, api: ApiClient, objects: Sequence[Mapping[str, Any]], dry_run: bool,
                    wait_established: float = 0) -> Applied:
    """Bring ``objects`` to the cluster behind ``api``; with ``wait_established`` > 0, wait that
    many seconds at most for every CustomResourceDefinition among them to be Established."""
    wanted = [(collection, labelled(obj, collection)) for obj in objects for collection in [Collection.of(obj)]]
    live = _live(api, wanted, dry_run=dry_run)
    differing = []
    for collection, body in wanted:
        current = (live[collection] or {}).get(body["metadata"]["name"])
        if current is None or not contains(current, _fields(body)):
            differing.append((collection, body, current))
    query = {"fieldManager": FIELD_MANAGER, "force": "true", **({"dryRun": "All"} if dry_run else {})}

    def apply(entry: tuple) -> dict:
        collection, body, _current = entry
        if live[collection] is None:
            return body  # a dry run on a kind not served or readable yet: shown as it would be made
        try:
            return api.request("PATCH", collection.path(body["metadata"]["name"]), body=body, query=query,
                               content_type="application/apply-patch+yaml")
        except ApiError as error:
            # An apply makes what is missing, so a 404 is its namespace's: in a dry run, one
            # the call's first stage would make.
            if dry_run and error.status == 404 and collection.namespace:
                return body
            raise

    applied = Applied()
    written = side_by_side(differing, apply, at_most=PARALLEL_WRITES)
    for (collection, body, current), after in zip(differing, written, strict=True):
        listed = live[collection]
        if listed is not None:
            listed[body["metadata"]["name"]] = after
        label, fields = _label(body, collection), _fields(body)
        applied.changed.append(label)
        applied.diffs.append({"before_header": label, "after_header": label,
                              "before": project(current, fields) if current else {},
                              "after": project(after, fields)})
    if wait_established and not dry_run:
        for collection, body in wanted:
            if body["kind"] == "CustomResourceDefinition":
                _wait_established(api, collection, (live[collection] or {})[body["metadata"]["name"]],
                                  timeout=wait_established)
    return applied


def delete_manifests(*, api: ApiClient, objects: Sequence[Mapping[str, Any]], dry_run: bool) -> Applied:
    """Delete those of ``objects`` that are live on the cluster behind ``api`` (only the
    project's own cluster-wide objects, the labelled ones, are found)."""
    wanted = [(collection, labelled(obj, collection)) for obj in objects for collection in [Collection.of(obj)]]
    live = _live(api, wanted, dry_run=dry_run)
    query = {"dryRun": "All"} if dry_run else None
    present = [(collection, body, current) for collection, body in wanted
               if (current := (live[collection] or {}).pop(body["metadata"]["name"], None)) is not None]

    def delete(entry: tuple) -> bool:
        collection, body, _current = entry
        try:
            api.request("DELETE", collection.path(body["metadata"]["name"]), query=query)
        except ApiError as error:
            if error.status != 404:  # gone meanwhile: what was asked
                raise
            return False
        return True

    deleted = Applied()
    gone = side_by_side(present, delete, at_most=PARALLEL_WRITES)
    for (collection, body, current), done in zip(present, gone, strict=True):
        if not done:
            continue
        label = _label(body, collection)
        deleted.changed.append(label)
        deleted.diffs.append({"before_header": label, "after_header": label,
                              "before": project(current, _fields(body)), "after": {}})
    return deleted


def _established(crd: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


def _wait_established(api: ApiClient, collection: Collection, crd: Mapping[str, Any], *, timeout: float) -> None:
    """Until the CRD is Established: ``crd`` as applied, else as read now and every
    ESTABLISHED_POLL_SECONDS after (a first deploy slept half a second before looking at each
    of its two kinds, the second long Established by then)."""
    deadline = time.monotonic() + timeout
    name = crd["metadata"]["name"]
    read = False
    while not _established(crd):
        if time.monotonic() > deadline:
            raise ApiError(status=0, reason="Timeout",
                           message=f"CustomResourceDefinition {name} not Established after {timeout:.0f}s")
        if read:
            time.sleep(ESTABLISHED_POLL_SECONDS)
        crd, read = api.request("GET", collection.path(name)), True


def _stage_of(obj: Mapping[str, Any]) -> int:
    """0: a Namespace; 1: the other kinds and rights; 2: the project's own kinds."""
    return 0 if obj.get("kind") == "Namespace" else 2 if obj.get("kind") in OWN_KINDS else 1


def in_stages(clusters: Sequence[Mapping[str, Any]], *, deleting: bool) -> list[list[tuple[int, dict[str, Any]]]]:
    """``dtservice_manifest``'s cluster entries in the order one call works through them: first
    each entry's Namespaces, then its other kinds and rights, then its dtDomains and
    dtServices; deleting, the other way round. A stage lists (the entry's index, the entry with
    that stage's objects only); an entry with none of a stage's objects is not in it."""
    stages: list[list[tuple[int, dict[str, Any]]]] = [[], [], []]
    for index, entry in enumerate(clusters):
        for number, stage in enumerate(stages):
            objects = [o for o in entry["objects"] if _stage_of(o) == number]
            if objects:
                stage.append((index, {**entry, "objects": objects}))
    return stages[::-1] if deleting else stages


def bring_clusters(*, clusters: Sequence[Mapping[str, Any]], api_for: Callable[[Mapping[str, Any]], ApiClient],
                   deleting: bool, dry_run: bool, wait_established: float, at_most: int) -> list[Applied]:
    """Apply (or delete) every entry's objects, placed in its ``namespaces``, stage by stage
    (``in_stages``), the entries of a stage side by side; what each entry did, in the order
    given. Every object is placed and checked before anything is written (ManifestError). An
    entry refused (403) right after this call granted rights is tried again for up to
    RIGHTS_SETTLE_SECONDS; with no new rights, a refusal is final."""
    # Placed once: 100 copies of a dtDomain at 100 nodes, checked and then applied.
    placed = [{**entry, "objects": in_namespaces(entry["objects"], entry.get("namespaces")), "namespaces": None}
              for entry in clusters]
    for entry in placed:
        check_manifests(entry["objects"])
    done = [Applied() for _entry in clusters]
    granted = False

    def bring(entry: Mapping[str, Any]) -> Applied:
        objects = entry["objects"]
        deadline = time.monotonic() + RIGHTS_SETTLE_SECONDS
        while True:
            try:
                if deleting:
                    return delete_manifests(api=api_for(entry), objects=objects, dry_run=dry_run)
                return apply_manifests(api=api_for(entry), objects=objects, dry_run=dry_run,
                                       wait_established=wait_established)
            except ApiError as error:
                # Safe to repeat: each attempt reads first and writes only what still differs.
                if not (granted and error.status == 403 and time.monotonic() < deadline):
                    raise
                time.sleep(0.2)

    for stage in in_stages(placed, deleting=deleting):
        applied = side_by_side([entry for _index, entry in stage], bring, at_most=at_most)
        for (index, _entry), result in zip(stage, applied, strict=True):
            done[index].changed.extend(result.changed)
            done[index].diffs.extend(result.diffs)
            # A dry run grants nothing; deleting, the rights go last.
            granted = granted or (bool(result.changed) and not deleting and not dry_run)
    return done
