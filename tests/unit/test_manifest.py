"""Comparing manifests with live objects: what decides whether deploy writes at all."""

from __future__ import annotations

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.control.manifest import (
    Collection,
    ManifestError,
    bring_clusters,
    check_manifests,
    contains,
    in_namespaces,
    in_stages,
    labelled,
    project,
)
from hypothesis import given
from hypothesis import strategies as st

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=12)


def with_server_defaults(value, extra):
    """What an API server does to an applied object: adds fields, never drops given ones."""
    if isinstance(value, dict):
        return {**{f"default-{k}": v for k, v in extra.items()}, **{k: with_server_defaults(v, extra)
                                                                    for k, v in value.items()}}
    if isinstance(value, list):
        return [with_server_defaults(v, extra) for v in value]
    return value


@given(documents)
def test_every_object_contains_itself(doc):
    assert contains(doc, doc)


@given(documents, st.dictionaries(st.text(max_size=3), scalars, max_size=2))
def test_server_defaults_do_not_make_a_difference(doc, extra):
    assert contains(with_server_defaults(doc, extra), doc)


@given(documents, documents)
def test_the_projection_shows_exactly_whether_live_contains_the_manifest(live, wanted):
    assert contains(project(live, wanted), wanted) == contains(live, wanted)


def test_a_changed_value_a_missing_field_or_a_longer_list_is_a_difference():
    live = {"spec": {"rules": [{"verbs": ["get"], "extra": 1}], "x": 1}}
    assert contains(live, {"spec": {"rules": [{"verbs": ["get"]}]}})
    assert not contains(live, {"spec": {"rules": [{"verbs": ["get", "list"]}]}})
    assert not contains(live, {"spec": {"rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]}})
    assert not contains(live, {"spec": {"y": None}})
    assert not contains(live, {"spec": {"x": "1"}})


def test_collections_and_labels_follow_the_kind():
    crd = {"kind": "CustomResourceDefinition", "metadata": {"name": "a.b"}}
    binding = {"kind": "RoleBinding", "metadata": {"name": "p", "namespace": "ns"}}
    service = {"kind": "dtService", "metadata": {"name": "s", "namespace": "ns"}}
    assert Collection.of(crd).path("a.b") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.b"
    assert Collection.of(binding).path() == "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings"
    assert Collection.of(service).path("s") == "/apis/sid.sightlineinnovation.com/v1/namespaces/ns/dtservices/s"
    assert labelled(crd, Collection.of(crd))["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "dtservice-provisioner"}
    assert "labels" not in labelled(service, Collection.of(service))["metadata"]
    assert "labels" not in crd["metadata"]


@pytest.mark.parametrize(("obj", "message"), [
    ({"kind": "Deployment", "metadata": {"name": "x"}}, "not one deploy applies"),
    ({"kind": "dtService", "metadata": {}}, "no metadata.name"),
    ({"kind": "dtService", "metadata": {"name": "s"}}, "needs metadata.namespace"),
])
def test_manifests_deploy_cannot_apply_are_refused_before_any_write(obj, message):
    with pytest.raises(ManifestError, match=message):
        check_manifests([{"kind": "Namespace", "metadata": {"name": "fine"}}, obj])


def test_one_call_refuses_a_bad_manifest_of_any_entry_before_it_reaches_an_api_server():
    good = {"kubeconfig": "a", "namespaces": None, "objects": [{"kind": "Namespace", "metadata": {"name": "fine"}}]}
    placed_wrong = {"kubeconfig": "b", "namespaces": ["ns"],
                    "objects": [{"kind": "dtDomain", "metadata": {"name": "d", "namespace": "x"}}]}
    unknown = {"kubeconfig": "c", "namespaces": None, "objects": [{"kind": "Deployment", "metadata": {"name": "x"}}]}
    asked: list[str] = []

    def api_for(entry):
        asked.append(entry["kubeconfig"])
        raise AssertionError("no API server is asked before every manifest is checked")
    for bad, message in ((placed_wrong, "has a metadata.namespace"), (unknown, "not one deploy applies")):
        with pytest.raises(ManifestError, match=message):
            bring_clusters(clusters=[good, bad], api_for=api_for, deleting=False, dry_run=False,
                           wait_established=0, at_most=1)
    assert asked == []


def test_objects_given_with_namespaces_go_to_each_namespace_once():
    domain = {"apiVersion": "sid.sightlineinnovation.com/v1", "kind": "dtDomain",
              "metadata": {"name": "d"}, "spec": {"mtu": 1420}}
    placed = in_namespaces([domain], ["ns-a", "ns-b"])
    assert [(o["metadata"]["name"], o["metadata"]["namespace"]) for o in placed] == [("d", "ns-a"), ("d", "ns-b")]
    assert all(o["spec"] == domain["spec"] for o in placed)
    assert "namespace" not in domain["metadata"]  # the caller's manifest is not changed
    check_manifests(placed)
    assert in_namespaces([domain], None) == [domain]


def test_an_object_with_its_own_namespace_cannot_be_spread_over_namespaces():
    with pytest.raises(ManifestError, match="has a metadata.namespace"):
        in_namespaces([{"kind": "dtDomain", "metadata": {"name": "d", "namespace": "x"}}], ["y"])


def test_one_call_applies_namespaces_then_kinds_and_rights_first_and_deletes_them_last():
    crd = {"kind": "CustomResourceDefinition", "metadata": {"name": "a.b"}}
    namespace = {"kind": "Namespace", "metadata": {"name": "keys"}}
    binding = {"kind": "RoleBinding", "metadata": {"name": "p"}}
    domain = {"kind": "dtDomain", "metadata": {"name": "d"}}
    service = {"kind": "dtService", "metadata": {"name": "s", "namespace": "ns"}}
    clusters = [{"kubeconfig": "/admin", "objects": [crd, binding, namespace], "namespaces": None},
                {"kubeconfig": "/prov", "objects": [domain], "namespaces": ["ns", "ns2"]},
                {"kubeconfig": "/prov", "objects": [service, crd], "namespaces": None}]
    spaces, first, then = in_stages(clusters, deleting=False)
    assert spaces == [(0, {"kubeconfig": "/admin", "objects": [namespace], "namespaces": None})]
    assert first == [(0, {"kubeconfig": "/admin", "objects": [crd, binding], "namespaces": None}),
                     (2, {"kubeconfig": "/prov", "objects": [crd], "namespaces": None})]
    assert then == [(1, clusters[1]), (2, {"kubeconfig": "/prov", "objects": [service], "namespaces": None})]
    assert in_stages(clusters, deleting=True) == [then, first, spaces]
    # Every object is in exactly one stage, with its entry's other fields.
    assert sorted((i, o["metadata"]["name"]) for stage in (spaces, first, then) for i, e in stage
                  for o in e["objects"]) == sorted((i, o["metadata"]["name"]) for i, e in enumerate(clusters)
                                                   for o in e["objects"])
    assert in_stages([{"objects": []}], deleting=False) == [[], [], []]
