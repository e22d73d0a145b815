"""A member taken out of a dtDomain, on real pods: the inventory's domain leaves node2 out and
no longer declares its dtService. The next deploy makes node2's dtService NotAMember, the hub
drops node2 from its table and its interface, node2's interface and wireguard-go go, and the
remaining members keep their tunnel. Put back, node2 joins again."""

from __future__ import annotations

import subprocess

import pytest
from conftest import kubectl_json, recap, run_playbook, write_inventory
from test_dataplane_e2e import in_pod, interfaces_in, ping, service, wait_connected

pytestmark = pytest.mark.integration

PODS = {"node0": "hub-pod", "node1": "client1", "node2": "client2"}
HUB = "100.96.0.1"


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
    run_playbook(bed, "playbooks/deploy.yml", inventory=everyone)
    wait_connected(bed, list(PODS))
    leaving = service(bed, "node2")
    hub_key = leaving["spec"]["server"]["publicKey"]
    before = {"address": next(a for a, p in leaving["peers"].items() if p["publicKey"] != hub_key),
              "interface": interfaces_in(bed, "node2", "client2")[0]}
    two = write_inventory(bed, directory / "two.json", services=declared(["node0", "node1"]),
                          domains=[{"name": "mydomain", "members": ["node0", "node1"]}])
    result = run_playbook(bed, "playbooks/deploy.yml", inventory=two)
    return {"bed": bed, "before": before, "everyone": everyone, "two": two, "result": result}


def test_the_former_member_is_not_a_member_with_a_clear_event(removed):
    bed = removed["bed"]
    assert service(bed, "node2")["status"] == "NotAMember"
    node2 = bed.node("node2")
    events = kubectl_json(bed, "node2", "get", "events", "-n", node2.namespace,
                          "--field-selector", "involvedObject.name=myservice")["items"]
    assert any(e["type"] == "Warning" and "not a member" in e["message"] for e in events), events


def test_the_hub_drops_the_former_member_from_its_table_and_its_interface(removed):
    bed, address = removed["bed"], removed["before"]["address"]
    assert address not in service(bed, "node0")["peers"]
    hub_interface = interfaces_in(bed, "node0", "hub-pod")[0]
    allowed = in_pod(bed, "node0", "hub-pod", "wg", "show", hub_interface, "allowed-ips", check=True).stdout
    assert f"{address}/32" not in allowed
    assert len(allowed.splitlines()) == 1, allowed  # node1 alone


def test_the_former_members_interface_and_wireguard_go_are_gone(removed):
    bed, interface = removed["bed"], removed["before"]["interface"]
    assert interfaces_in(bed, "node2", "client2") == []
    assert subprocess.run(["pgrep", "-f", f"wireguard-go {interface}"], capture_output=True,
                          check=False).returncode == 1
    assert ping(bed, "node2", "client2", HUB, attempts=1) == 0


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
    assert ping(bed, "node2", "client2", HUB) == 3
    assert ping(bed, "node1", "client1", HUB) == 3
