"""The registry's rules: a new network's entry, the ports a node serves, an entry's port."""

from __future__ import annotations

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import registry as registry_rules

NODE0 = contract.Member(name="node0", namespace="dtaas-node0-dtaas", address="198.18.0.10", port_range="51820-51822")
NODE1 = contract.Member(name="node1", namespace="dtaas-node1-dtaas", address="198.18.0.11", port_range="51820-51822")
DOMAIN = contract.Domain(name="mydomain", members=(NODE0, NODE1))


def entry(*, subnet: str, node: contract.Member, port: int, name: str = "net") -> dict:
    return {"subnet": subnet, "endpoint": f"{node.address}:{port}",
            "server": {"node": node.name, "namespace": node.namespace, "name": name, "id": "x"}}


def test_a_new_network_takes_the_next_subnet_and_its_servers_first_free_port():
    networks = {"a": entry(subnet="100.96.0.0/24", node=NODE0, port=51820)}
    new = registry_rules.new_network_entry(name="b", domain=DOMAIN, server=NODE0, server_id="id-b",
                                           networks=networks, ports_taken=[51820])
    assert new == {"subnet": "100.96.1.0/24", "endpoint": "198.18.0.10:51821",
                   "server": {"node": "node0", "namespace": "dtaas-node0-dtaas", "name": "b", "id": "id-b"}}


def test_a_new_network_fails_when_its_servers_ports_are_all_taken():
    with pytest.raises(addressing.PortsExhausted):
        registry_rules.new_network_entry(name="b", domain=DOMAIN, server=NODE0, server_id="id-b", networks={},
                                         ports_taken=[51820, 51821, 51822])


def test_the_ports_a_node_serves_come_from_every_registry_and_only_its_own_networks():
    mine = {"a": entry(subnet="100.96.0.0/24", node=NODE0, port=51820),
            "b": entry(subnet="100.96.1.0/24", node=NODE1, port=51821)}
    other_domain = {"c": entry(subnet="100.112.0.0/24", node=NODE0, port=51822, name="c")}
    assert sorted(registry_rules.ports_served(node="node0", registries=[mine, other_domain])) == [51820, 51822]
    assert registry_rules.ports_served(node="node1", registries=[mine, other_domain]) == [51821]


@pytest.mark.parametrize(("obj", "networks"), [
    (None, {}), ({}, {}), ({"status": None}, {}), ({"status": {"networks": None}}, {}),
    ({"status": {"networks": {"a": {"subnet": "s"}}}}, {"a": {"subnet": "s"}}),
])
def test_networks_of_a_domain_object(obj, networks):
    assert registry_rules.networks_of(obj) == networks


def test_endpoint_port():
    assert registry_rules.endpoint_port("198.18.0.10:51830") == 51830
    assert registry_rules.endpoint_port("[fd00::1]:51830") == 51830


def test_of_two_networks_that_raced_for_one_port_exactly_the_later_yields():
    first = {"endpoint": "198.18.0.10:51820"}
    assert registry_rules.yields_port(domain="b", name="net", entry=first, others={"a": {"other": dict(first)}})
    assert not registry_rules.yields_port(domain="a", name="other", entry=first, others={"b": {"net": dict(first)}})
    other_port = {"a": {"other": {"endpoint": "198.18.0.10:51821"}}}
    other_node = {"a": {"other": {"endpoint": "198.18.0.11:51820"}}}
    assert not registry_rules.yields_port(domain="b", name="net", entry=first, others=other_port)
    assert not registry_rules.yields_port(domain="b", name="net", entry=first, others=other_node)


# -- failover ------------------------------------------------------------------------------------------
def test_the_hub_is_at_dot_one_until_a_failover_names_its_address():
    plain = entry(subnet="100.96.0.0/24", node=NODE0, port=51820)
    assert registry_rules.hub_address(plain) == "100.96.0.1"
    handed = registry_rules.handed_over_entry(entry=plain, successor=NODE1, name="net", successor_id="id-a",
                                              address="100.96.0.3", ports_taken=[51820])
    assert handed == {"subnet": "100.96.0.0/24", "endpoint": "198.18.0.11:51821",
                      "server": {"node": "node1", "namespace": "dtaas-node1-dtaas", "name": "net", "id": "id-a",
                                 "address": "100.96.0.3"}}
    assert registry_rules.hub_address(handed) == "100.96.0.3"


def test_a_gone_hubs_grace_counts_from_the_recorded_time():
    now = 1_800_000_000.0
    plain = entry(subnet="100.96.0.0/24", node=NODE0, port=51820)
    assert registry_rules.failover_in(plain, grace=30, now=now) is None
    gone = registry_rules.with_absence(plain, since=registry_rules.timestamp(now - 10))
    assert gone["hubAbsentSince"] == "2027-01-15T07:59:50Z"
    assert registry_rules.failover_in(gone, grace=30, now=now) == 20
    assert registry_rules.failover_in(gone, grace=5, now=now) == -5
    assert registry_rules.with_absence(gone, since=None) == plain
    assert registry_rules.failover_in({**plain, "hubAbsentSince": "garbage"}, grace=30, now=now) == 30
