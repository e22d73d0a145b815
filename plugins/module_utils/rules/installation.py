"""What role dtservice_cluster installs on each member cluster, as dtservice_manifest's
``clusters``: the two CRDs, the provisioner's ClusterRoles (its rights in node namespaces,
reading the project's own kinds everywhere), the tenants' roles, the namespace of the key
Secrets with the provisioner's Role there, and in every node namespace the RoleBinding that
gives the provisioner its rights there.

Owns which objects and which rules (docs/security.md says why each right is needed); the
CRDs come in as objects (the files under ``roles/dtservice_cluster/files``). Each node
namespace is bound on its own node's cluster only: in a federation of several clusters the
other namespaces do not exist there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract

RBAC = "rbac.authorization.k8s.io"
PROVISIONER = "dtservice-provisioner"
READER = "dtservice-provisioner-reader"
KEYS = "dtservice-provisioner-keys"
OWN_KINDS = ["dtservices", "dtdomains"]


def namespaces_by_cluster(nodes: Iterable[tuple[str, str]], *,
                          wanted: Collection[str] | None = None) -> dict[str, list[str]]:
    """Admin kubeconfig -> the node namespaces on that cluster, in the nodes' order, from
    (namespace, admin kubeconfig) pairs; only those in ``wanted`` unless it is None."""
    by_cluster: dict[str, list[str]] = {}
    for namespace, kubeconfig in nodes:
        if wanted is None or namespace in wanted:
            by_cluster.setdefault(kubeconfig, []).append(namespace)
    return by_cluster


def _rule(groups: list[str], resources: list[str], verbs: list[str], **extra: Any) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, **extra, "verbs": verbs}


def _cluster_role(name: str, rules: list[dict[str, Any]], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": metadata, "rules": rules}


def _binding(kind: str, name: str, *, user: str, role: str = "ClusterRole") -> dict[str, Any]:
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": role, "name": name},
            "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}]}


def cluster_objects(*, crds: Sequence[Mapping[str, Any]], provisioner_user: str,
                    lease_name: str) -> list[dict[str, Any]]:
    """The cluster-wide objects of one member cluster: the CRDs, the roles, the namespace of
    the key Secrets."""
    group = contract.GROUP
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    return [
        *(dict(crd) for crd in crds),
        # In node namespaces, through the RoleBindings: its own kinds, the pods it attaches
        # and labels, the Events it reports, the daemon's Lease; and the key Secret an
        # earlier release kept there, read once and deleted when moved to KEYS_NAMESPACE.
        _cluster_role(PROVISIONER, [
            _rule([group], OWN_KINDS, ["get", "list", "watch", "create", "update", "patch", "delete"]),
            _rule([group], [f"{kind}/status" for kind in OWN_KINDS], ["get", "update", "patch"]),
            _rule([""], ["pods"], ["get", "list", "watch", "patch"]),
            _rule([""], ["secrets"], ["get", "delete"]),
            _rule([""], ["events"], ["create"]),
            _rule(["coordination.k8s.io"], ["leases"], ["create"]),
            _rule(["coordination.k8s.io"], ["leases"], ["get", "update"], resourceNames=[lease_name]),
        ]),
        # Reading the project's own kinds in every namespace: a pass lists each of them once
        # per cluster, not once per node namespace. No write, no other kind.
        _cluster_role(READER, [_rule([group], OWN_KINDS, ["get", "list", "watch"])]),
        _binding("ClusterRoleBinding", READER, user=provisioner_user),
        # A tenant writes dtServices and reads the dtDomains it may name; dtDomains, the status
        # subresource and peers' key Secrets stay the operator's and the provisioner's.
        _cluster_role("dtservice-tenant", [
            _rule([group], ["dtservices"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
            _rule([group], ["dtdomains"], ["get", "list", "watch"]),
        ]),
        # Aggregated into the standard roles, as Kubernetes expects of a custom resource:
        # `edit` and `admin` write dtServices; `view` reads them and the dtDomains (view's
        # rights reach edit and admin only through labels of their own).
        _cluster_role("dtservice-tenant-edit",
                      [_rule([group], ["dtservices"], ["create", "update", "patch", "delete", "deletecollection"])],
                      labels={f"{aggregate}edit": "true", f"{aggregate}admin": "true"}),
        _cluster_role("dtservice-tenant-view", [_rule([group], OWN_KINDS, ["get", "list", "watch"])],
                      labels={f"{aggregate}view": "true", f"{aggregate}edit": "true", f"{aggregate}admin": "true"}),
        # The key Secrets of every node of the cluster, where no tenant role reaches.
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": contract.KEYS_NAMESPACE}},
    ]


def keys_objects(*, provisioner_user: str) -> list[dict[str, Any]]:
    """In KEYS_NAMESPACE: the provisioner's rights on the key Secrets, which it lists once per
    cluster and pass, makes, rewrites in a key rotation and deletes with their dtService."""
    return [
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": KEYS},
         "rules": [_rule([""], ["secrets"], ["get", "list", "create", "update", "delete"])]},
        _binding("RoleBinding", KEYS, user=provisioner_user, role="Role"),
    ]


def cluster_manifests(*, crds: Sequence[Mapping[str, Any]], admin_kubeconfigs: Sequence[str],
                      namespaces: Mapping[str, Sequence[str]], provisioner_user: str,
                      lease_name: str) -> list[dict[str, Any]]:
    """dtservice_manifest's ``clusters``: per admin kubeconfig (each once) the cluster-wide
    objects, the provisioner's RoleBinding in that cluster's node namespaces (``namespaces``,
    as ``namespaces_by_cluster`` gives them), and its Role and RoleBinding in KEYS_NAMESPACE."""
    clusters = []
    for kubeconfig in dict.fromkeys(admin_kubeconfigs):
        clusters.append({"kubeconfig": kubeconfig,
                         "objects": cluster_objects(crds=crds, provisioner_user=provisioner_user,
                                                    lease_name=lease_name)})
        clusters.append({"kubeconfig": kubeconfig, "namespaces": list(namespaces.get(kubeconfig, [])),
                         "objects": [_binding("RoleBinding", PROVISIONER, user=provisioner_user)]})
        clusters.append({"kubeconfig": kubeconfig, "namespaces": [contract.KEYS_NAMESPACE],
                         "objects": keys_objects(provisioner_user=provisioner_user)})
    return clusters
