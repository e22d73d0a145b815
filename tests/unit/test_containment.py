"""A failure stays with what caused it: one dtService, or one node of a pass."""

from __future__ import annotations

from ansible_collections.sightline.dtservice.plugins.module_utils.control.status import describe
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
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
