"""NodeAgent._taken_out: whether the home copy of a dtService's domain leaves the agent's node out,
so that the node's interface for it is removed. Removing a working interface on a wrong
True would cut a member's tunnel, so anything short of the home copy's word says no
(tests/integration/test_member_removal.py runs the removal on real pods)."""

from __future__ import annotations

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Domain, NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.machine.agent import NodeAgent

HOME = NodeRef(name="node0", namespace="home-ns", address="198.18.0.10", netns="bed-node0")
NODE = NodeRef(name="node2", namespace="tenant-c", address="198.18.0.12", netns="bed-node2")
FEDERATION = {node.name: node for node in (HOME, NODE)}


def domain(*members: NodeRef) -> dict:
    return {"metadata": {"name": "mydomain"},
            "spec": {"members": [{"name": m.name, "namespace": m.namespace, "address": m.address}
                                 for m in members]}}


class Domains:
    """The reads _taken_out makes: the home node's dtDomains (or a refusal)."""

    def __init__(self, home_copy: dict | None, *, refuse: bool = False) -> None:
        self.home_copy = home_copy
        self.refuse = refuse

    def list_domains(self, node: NodeRef) -> list[dict]:
        assert node is HOME
        if self.refuse:
            raise ApiError(status=503, reason="Service Unavailable")
        return [] if self.home_copy is None else [self.home_copy]

    @staticmethod
    def domain(obj: dict) -> Domain:
        return Domain.from_object(obj)


def taken_out(cluster: Domains, local_copy: dict) -> bool:
    agent = NodeAgent(cluster=cluster, node=NODE, federation=FEDERATION, handshake_timeout=1)
    service = {"metadata": {"name": "myservice"}, "spec": {"domainSelector": "mydomain"}}
    return agent._taken_out(service, domains={"mydomain": local_copy})


@pytest.mark.parametrize("local_copy", [domain(HOME, NODE), domain(HOME)],
                         ids=["own copy still lists it", "own copy left it out too"])
def test_a_home_copy_without_the_node_takes_it_out(local_copy):
    assert taken_out(Domains(domain(HOME)), local_copy) is True


def test_a_home_copy_with_the_node_keeps_it():
    assert taken_out(Domains(domain(HOME, NODE)), domain(HOME, NODE)) is False


def test_a_home_api_server_that_refuses_says_nothing():
    assert taken_out(Domains(None, refuse=True), domain(HOME, NODE)) is False


def test_a_home_copy_that_is_gone_says_nothing():
    assert taken_out(Domains(None), domain(HOME, NODE)) is False


def test_a_dtservice_without_a_domain_copy_says_nothing():
    agent = NodeAgent(cluster=Domains(domain(HOME)), node=NODE, federation=FEDERATION, handshake_timeout=1)
    service = {"metadata": {"name": "myservice"}, "spec": {"domainSelector": "mydomain"}}
    assert agent._taken_out(service, domains={}) is False
