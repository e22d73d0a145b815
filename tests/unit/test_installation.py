"""What role dtservice_cluster installs (rules/installation.py): each cluster once, each node
namespace bound on its own cluster only, and rights no wider than docs/security.md says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import installation

CRD_FILES = sorted((Path(__file__).resolve().parents[2] / "roles/dtservice_cluster/files").glob("*.yaml"))
CRDS = [document for path in CRD_FILES for document in yaml.safe_load_all(path.read_text()) if document]
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def manifests(**overrides):
    arguments = {"crds": CRDS, "admin_kubeconfigs": ["a.kubeconfig", "b.kubeconfig", "a.kubeconfig"],
                 "namespaces": installation.namespaces_by_cluster(
                     [("ns0", "a.kubeconfig"), ("ns1", "b.kubeconfig"), ("ns2", "a.kubeconfig")]),
                 "provisioner_user": "provisioner", "lease_name": "the-lease", **overrides}
    return installation.cluster_manifests(**arguments)


def roles_of(cluster_wide: dict) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in cluster_wide["objects"] if o["kind"] == "ClusterRole"}


def test_namespaces_are_grouped_by_their_own_cluster_in_order_and_only_the_wanted_ones():
    nodes = [("ns0", "a"), ("ns1", "b"), ("ns2", "a"), ("ns3", "b")]
    assert installation.namespaces_by_cluster(nodes) == {"a": ["ns0", "ns2"], "b": ["ns1", "ns3"]}
    assert installation.namespaces_by_cluster(nodes, wanted={"ns2", "ns3"}) == {"a": ["ns2"], "b": ["ns3"]}
    assert installation.namespaces_by_cluster(nodes, wanted=set()) == {}


def test_each_cluster_gets_the_crds_and_roles_once_and_binds_only_its_own_namespaces():
    clusters = manifests()
    assert [c["kubeconfig"] for c in clusters] == ["a.kubeconfig"] * 3 + ["b.kubeconfig"] * 3
    cluster_wide, bindings = clusters[0], clusters[1]
    assert "namespaces" not in cluster_wide
    # The CRDs first: the roles name kinds that must exist by the time they are used.
    assert [o["kind"] for o in cluster_wide["objects"][:2]] == ["CustomResourceDefinition"] * 2
    assert bindings["namespaces"] == ["ns0", "ns2"] and clusters[4]["namespaces"] == ["ns1"]
    (binding,) = bindings["objects"]
    assert binding["kind"] == "RoleBinding" and binding["roleRef"]["name"] == "dtservice-provisioner"
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "provisioner"}]


def test_a_cluster_without_node_namespaces_gets_no_binding_anywhere():
    clusters = manifests(namespaces=installation.namespaces_by_cluster([("ns0", "a.kubeconfig")]))
    assert clusters[4] == {"kubeconfig": "b.kubeconfig", "namespaces": [], "objects": clusters[1]["objects"]}


def test_key_secrets_are_the_provisioners_alone_in_a_namespace_of_their_own_on_every_cluster():
    clusters = manifests()
    for cluster_wide, keys in ((clusters[0], clusters[2]), (clusters[3], clusters[5])):
        assert {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": contract.KEYS_NAMESPACE}} \
            in cluster_wide["objects"]
        assert keys["namespaces"] == [contract.KEYS_NAMESPACE]
        role, binding = keys["objects"]
        assert role["kind"] == "Role" and role["rules"] == [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "update", "delete"]}]
        assert binding["kind"] == "RoleBinding" and binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                        "name": "provisioner"}]
    # In node namespaces, only an earlier release's key Secret: read once, deleted when moved.
    rules = roles_of(clusters[0])["dtservice-provisioner"]["rules"]
    assert [r["verbs"] for r in rules if r["resources"] == ["secrets"]] == [["get", "delete"]]
    for name, role in roles_of(clusters[0]).items():
        assert not any("secrets" in rule["resources"] for rule in role["rules"] if name != "dtservice-provisioner")


def test_cluster_wide_rights_only_read_the_projects_own_kinds_and_tenants_never_write_domains_or_status():
    cluster_wide = manifests()[0]
    roles = roles_of(cluster_wide)
    (reader_binding,) = [o for o in cluster_wide["objects"] if o["kind"] == "ClusterRoleBinding"]
    # The only cluster-wide grant to the provisioner is the reader.
    assert reader_binding["roleRef"]["name"] == "dtservice-provisioner-reader"
    assert reader_binding["subjects"][0]["name"] == "provisioner"
    for rule in roles["dtservice-provisioner-reader"]["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert set(rule["resources"]) <= {"dtservices", "dtdomains"}
    for name in ("dtservice-tenant", "dtservice-tenant-edit", "dtservice-tenant-view"):
        for rule in roles[name]["rules"]:
            assert not any(r.endswith("/status") for r in rule["resources"]), name
            if "dtdomains" in rule["resources"]:
                assert not set(rule["verbs"]) & WRITES, name
    labels = roles["dtservice-tenant-view"]["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in roles["dtservice-tenant-edit"]["metadata"]["labels"]


@pytest.mark.parametrize("lease", ["dtservice-reconciler", "another-lease"])
def test_the_provisioner_updates_only_the_reconcilers_lease_by_name(lease):
    rules = roles_of(manifests(lease_name=lease)[0])["dtservice-provisioner"]["rules"]
    lease_rules = [r for r in rules if r["resources"] == ["leases"]]
    named = [r for r in lease_rules if "resourceNames" in r]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
                      "verbs": ["get", "update"]}]
    assert [r["verbs"] for r in lease_rules if "resourceNames" not in r] == [["create"]]
