"""The contract module against the CRDs the cluster role installs, and the node shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.sightline.dtservice.plugins.module_utils import contract

CRDS = Path(__file__).resolve().parents[2] / "roles" / "dtservice_cluster" / "files"


def crd(plural: str) -> dict:
    (document,) = list(yaml.safe_load_all((CRDS / f"{plural}.{contract.GROUP}.yaml").read_text()))
    return document


def schema(plural: str) -> dict:
    (version,) = crd(plural)["spec"]["versions"]
    assert version["name"] == contract.VERSION
    return version["schema"]["openAPIV3Schema"]["properties"]


@pytest.mark.parametrize(("plural", "kind"), [(contract.SERVICES, contract.SERVICE_KIND),
                                              (contract.DOMAINS, contract.DOMAIN_KIND)])
def test_each_crd_names_the_contracts_group_kind_and_plural(plural, kind):
    document = crd(plural)
    assert document["metadata"]["name"] == f"{plural}.{contract.GROUP}"
    assert document["spec"]["group"] == contract.GROUP
    assert document["spec"]["names"]["kind"] == kind
    assert document["spec"]["names"]["plural"] == plural


def test_the_dtservice_status_enum_is_the_contracts_status_words():
    assert set(schema(contract.SERVICES)["status"]["enum"]) == contract.STATES


def test_the_peer_roles_are_the_contracts():
    peer = schema(contract.SERVICES)["peers"]["additionalProperties"]["properties"]["labels"]
    assert set(peer["additionalProperties"]["enum"]) == {contract.SERVER, contract.CLIENT}


def test_the_dtdomain_defaults_are_the_contracts():
    spec = schema(contract.DOMAINS)["spec"]["properties"]
    defaults = contract.Domain(name="d", members=())
    assert spec["members"]["items"]["properties"]["portRange"]["default"] == contract.DEFAULT_PORT_RANGE
    for attribute, field in (("pool", "pool"), ("subnet_prefix", "subnetPrefix"),
                             ("persistent_keepalive", "persistentKeepalive"), ("mtu", "mtu"),
                             ("failover_grace_seconds", "failoverGraceSeconds")):
        assert spec[field]["default"] == getattr(defaults, attribute), field


def test_status_words_read_as_bare_words_everywhere():
    assert f"{contract.Status.WAITING_FOR_POD}" == "WaitingForPod" == str(contract.Status.WAITING_FOR_POD)
    assert contract.Status.CONNECTED == "Connected"
    assert contract.QUIET <= contract.STATES and contract.WAITING <= contract.STATES
    assert contract.Status.FAILED not in contract.SPECIFIC and contract.Status.POD_REFUSED in contract.SPECIFIC


def test_a_node_from_host_variables_takes_every_default_and_keeps_what_is_given():
    params = contract.node_params(host="node0", host_vars={
        "dtservice_node_namespace": "tenant", "dtservice_node_address": "198.18.0.10",
        "dtservice_node_kubelet_nodes": ["k1"], "dtservice_node_port_range": ""})
    assert params == {"name": "node0", "namespace": "tenant", "address": "198.18.0.10", "kubeconfig": None,
                      "context": None, "port_range": contract.DEFAULT_PORT_RANGE, "netns": None,
                      "kubelet_nodes": ["k1"], "kubelet_kubeconfig": None,
                      "runtime_endpoint": contract.DEFAULT_RUNTIME_ENDPOINT,
                      "pod_lookup": list(contract.POD_LOOKUP_METHODS), "crictl": contract.DEFAULT_CRICTL}
    node = contract.NodeRef.from_params(params)
    assert node.served_nodes == ("k1",) and node.to_params() == params


def test_a_host_without_namespace_or_address_is_refused_by_name():
    with pytest.raises(ValueError, match="node1 lacks dtservice_node_namespace, dtservice_node_address"):
        contract.node_params(host="node1", host_vars={})


def test_the_node_argument_spec_has_one_option_per_field_with_the_same_defaults():
    node = contract.NodeRef(name="n", namespace="ns", address="198.18.0.1")
    assert set(contract.NODE_OPTIONS) == set(node.to_params())
    for name, option in contract.NODE_OPTIONS.items():
        if "default" in option:
            assert option["default"] == node.to_params()[name], name
    assert {n for n, o in contract.NODE_OPTIONS.items() if o.get("required")} == {"name", "namespace", "address"}


def test_a_domain_round_trips_through_its_spec():
    domain = contract.Domain(name="dom", members=(contract.Member(name="a", namespace="x", address="198.18.0.1"),),
                             mtu=1380)
    assert contract.Domain.from_object({"metadata": {"name": "dom"}, "spec": domain.to_spec()}) == domain


def test_interface_names_fit_linux_and_follow_the_pattern():
    name = contract.interface_name(namespace="a" * 63, network="b" * 63)
    assert len(name) <= 15 and contract.INTERFACE_PATTERN.match(name)
    assert contract.interface_name(namespace="a", network="bc") != contract.interface_name(namespace="ab", network="c")


def test_the_health_printer_columns_read_the_contracts_annotations():
    """`kubectl get dtservices` prints the peers and the newest handshake's age from the
    annotations a pass writes (rules/health.py); jsonPath escapes the dots of the key."""
    (version,) = crd("dtservices")["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    for name, key, kind in [("Peers", contract.PEERS_ANNOTATION, "string"),
                            ("Handshake", contract.HANDSHAKE_ANNOTATION, "date")]:
        assert columns[name]["type"] == kind
        assert columns[name]["jsonPath"] == ".metadata.annotations." + key.replace(".", "\\.")
    assert columns["Status"]["jsonPath"] == ".status"
