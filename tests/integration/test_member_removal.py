"""A member taken out of a dtDomain, on real pods: the inventory's domain leaves node2 out and
no longer declares its dtService. The next deploy makes node2's dtServices NotAMember, the hub
drops node2 from its table and its interface, node2's interfaces and wireguard-go go, and the
remaining members keep their tunnel. A network node2 was the hub of (applied with kubectl,
node2 first) is handed to a remaining member. Put back, node2 joins again."""

from __future__ import annotations

import subprocess

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import interface_name
from conftest import kubectl_json, recap, run_playbook, write_inventory
from test_control_plane import apply, dtservice
from test_dataplane_e2e import in_pod, interfaces_in, ping, service, wait_connected
from test_failover import own_address, registry_entry

pytestmark = pytest.mark.integration

PODS = {"node0": "hub-pod", "node1": "client1", "node2": "client2"}
HUB = "100.96.0.1"
# A network whose hub is node2: its dtService is applied (and the network registered) first.
HUBNET = "hubnet"


def apply_hubnet(bed, node: str) -> None:
    apply(bed, node, dtservice(HUBNET, "mydomain", PODS[node]))


def hub_of(bed, name: str) -> str:
    return registry_entry(bed, name)["server"]["node"]


def interface_of(bed, node: str, name: str) -> str:
    target = bed.node(node)
    return interface_name(namespace=target.namespace, network=name, node_netns=target.netns)


def declared(nodes: list[str]) -> dict[str, list[dict]]:
    return {node: [{"name": "myservice", "domain": "mydomain", "pod": PODS[node]}] for node in nodes}


@pytest.fixture(scope="module")
def removed(bed_factory, tmp_path_factory):
    """Three members deployed and connected, then node2 taken out by a second deploy."""
    bed = bed_factory(nodes=3)
    for node, pod in PODS.items():
        bed.create_pod(node, pod)
    directory = tmp_path_factory.mktemp("removal")
    everyone = write_inventory(bed, directory / "three.json", services=declared(list(PODS)))
    run_playbook(bed, "playbooks/deploy.yml", inventory=everyone)  # the kinds, the domain, myservice
    apply_hubnet(bed, "node2")
    run_playbook(bed, "playbooks/deploy.yml", inventory=everyone)
    apply_hubnet(bed, "node0")
    apply_hubnet(bed, "node1")
    run_playbook(bed, "playbooks/deploy.yml", inventory=everyone)
    wait_connected(bed, list(PODS))
    wait_connected(bed, list(PODS), name=HUBNET)
    assert hub_of(bed, HUBNET) == "node2"
    before = {"address": own_address(service(bed, "node2")),
              "interfaces": interfaces_in(bed, "node2", "client2")}
    assert sorted(before["interfaces"]) == sorted(interface_of(bed, "node2", n) for n in ("myservice", HUBNET))
    two = write_inventory(bed, directory / "two.json", services=declared(["node0", "node1"]),
                          domains=[{"name": "mydomain", "members": ["node0", "node1"]}])
    run_playbook(bed, "playbooks/deploy.yml", inventory=two)
    return {"bed": bed, "before": before, "everyone": everyone, "two": two}


@pytest.mark.parametrize("name", ["myservice", HUBNET])
def test_the_former_member_is_not_a_member_with_a_clear_event(removed, name):
    bed = removed["bed"]
    assert service(bed, "node2", name)["status"] == "NotAMember"
    node2 = bed.node("node2")
    events = kubectl_json(bed, "node2", "get", "events", "-n", node2.namespace,
                          "--field-selector", f"involvedObject.name={name}")["items"]
    assert any(e["type"] == "Warning" and "not a member" in e["message"] for e in events), events


def test_the_hub_drops_the_former_member_from_its_table_and_its_interface(removed):
    bed, address = removed["bed"], removed["before"]["address"]
    assert address not in service(bed, "node0")["peers"]
    hub_interface = interface_of(bed, "node0", "myservice")
    allowed = in_pod(bed, "node0", "hub-pod", "wg", "show", hub_interface, "allowed-ips", check=True).stdout
    assert f"{address}/32" not in allowed
    assert len(allowed.splitlines()) == 1, allowed  # node1 alone


def test_the_former_members_interfaces_and_wireguard_go_are_gone(removed):
    bed = removed["bed"]
    assert interfaces_in(bed, "node2", "client2") == []
    for interface in removed["before"]["interfaces"]:
        assert subprocess.run(["pgrep", "-f", f"wireguard-go (--foreground )?{interface}"], capture_output=True,
                              check=False).returncode == 1
    assert ping(bed, "node2", "client2", HUB, attempts=1) == 0


def test_a_network_the_former_member_served_is_handed_to_a_remaining_member(removed):
    bed = removed["bed"]
    hub = hub_of(bed, HUBNET)
    assert hub in ("node0", "node1")
    wait_connected(bed, ["node0", "node1"], name=HUBNET, timeout=20)
    client = "node1" if hub == "node0" else "node0"
    seen = service(bed, client, HUBNET)
    hub_address = next(a for a, p in seen["peers"].items() if p["publicKey"] == seen["spec"]["server"]["publicKey"])
    assert ping(bed, client, PODS[client], hub_address) == 3


def test_the_remaining_members_keep_their_tunnel(removed):
    bed = removed["bed"]
    assert service(bed, "node1")["status"] == "Connected"
    assert ping(bed, "node1", "client1", HUB) == 3


def test_a_second_deploy_without_the_member_changes_nothing(removed):
    bed = removed["bed"]
    result = run_playbook(bed, "playbooks/deploy.yml", inventory=removed["two"])
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in recap(result.stdout).values()), result.stdout[-3000:]


def test_put_back_the_member_joins_again(removed):
    bed = removed["bed"]
    run_playbook(bed, "playbooks/deploy.yml", inventory=removed["everyone"])
    wait_connected(bed, list(PODS))
    wait_connected(bed, list(PODS), name=HUBNET)  # now a client of the network it served
    assert ping(bed, "node2", "client2", HUB) == 3
    assert ping(bed, "node1", "client1", HUB) == 3
