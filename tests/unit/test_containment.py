"""A failure stays with what caused it: one dtService, or one node of a pass."""

from __future__ import annotations

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.control.status import describe
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import (
    Cluster,
    Connections,
    RightsRefused,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.machine.machine_pass import NodeFailed, contained


class Node:
    def __init__(self, name: str) -> None:
        self.name = name


def test_a_node_whose_work_raises_is_reported_and_the_others_are_served():
    def work(*, cluster, node):
        if node.name == "b":
            raise ConnectionResetError("peer reset")
        return f"served {node.name}"

    failed: dict[str, NodeFailed] = {}
    run = contained(work, failed=failed)
    results = {name: run(cluster=None, node=Node(name)) for name in ("a", "b", "c")}
    assert results["a"] == "served a" and results["c"] == "served c"
    assert results["b"] == NodeFailed(error="unexpected ConnectionResetError: peer reset")


def test_a_node_that_failed_in_an_earlier_phase_is_not_worked_on_again():
    calls = []
    earlier = {"b": NodeFailed(error="its API server did not answer")}
    run = contained(lambda *, cluster, node: calls.append(node.name), failed=earlier)
    assert run(cluster=None, node=Node("b")) is earlier["b"]
    run(cluster=None, node=Node("a"))
    assert calls == ["a"]


def test_a_decoding_error_is_named_but_its_text_is_withheld():
    error = UnicodeDecodeError("utf-8", b"\xffkey-material", 0, 1, "invalid start byte")
    told = describe(error)
    assert "UnicodeDecodeError" in told and "xff" not in told and "key-material" not in told


def test_an_api_servers_refusal_is_quoted_and_bounded():
    told = describe(ApiError(status=503, reason="Service Unavailable", message="x" * 5000))
    assert told.startswith("an API server did not answer as expected") and len(told) < 400


def test_a_write_refused_in_a_nodes_namespace_is_the_nodes_failure_and_one_elsewhere_is_not():
    """Lost rights in a node's namespace show at its first write (every read is cluster-wide):
    such a refusal names the namespace, so the node's own pass fails as a whole (and is
    retried) while a pass that wrote there for another node's network keeps it with that
    dtService. A key Secret's write goes to the keys namespace: never the node's."""
    class Refusing:
        def request(self, method, path, **options):
            raise ApiError(status=403, reason="Forbidden", message=f"cannot {method} {path}")

    connections = Connections()
    connections.api = lambda node: Refusing()
    cluster = Cluster(connections=connections)
    node = NodeRef(name="node2", namespace="ns2", address="198.18.0.12")
    with pytest.raises(RightsRefused) as refused:
        cluster.replace_service(node, {"metadata": {"name": "net"}})
    assert refused.value.namespace == "ns2" and refused.value.status == 403
    with pytest.raises(ApiError) as elsewhere:
        cluster.create_secret(node, {"metadata": {"name": "ns2.net"}})
    assert not isinstance(elsewhere.value, RightsRefused)
