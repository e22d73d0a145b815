"""The data plane end to end: deploy.yml on the local federation, real wireguard-go, real
traffic between pods on different nodes."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.data import podnet
from conftest import key_secret, kubectl_json, recap, run_playbook, write_inventory

pytestmark = pytest.mark.integration

SEED = [("node0", "my-pod"), ("node1", "service-pod"), ("node2", "worker-pod")]
JOINERS = [(f"node{i}", f"joiner{i}") for i in range(3, 8)]


def in_pod(bed, node: str, pod: str, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", bed.pod_netns(node, pod), *argv], capture_output=True,
                          text=True, check=check)


def ping(bed, node: str, pod: str, address: str, *, count: int = 3, source: str | None = None,
         attempts: int = 3) -> int:
    """The most replies one of up to ``attempts`` rounds of ``count`` pings received: a
    loaded machine may drop a reply now and then, a path that is cut answers none."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", address]
    if source:
        argv[1:1] = ["-I", source]
    best = 0
    for _attempt in range(attempts):
        out = in_pod(bed, node, pod, *argv).stdout
        received = next((int(line.split(",")[1].split()[0]) for line in out.splitlines() if "received" in line), 0)
        best = max(best, received)
        if best == count:
            break
    return best


def service(bed, node: str, name: str = "myservice") -> dict:
    return kubectl_json(bed, node, "get", "dtservice", name, "-n", bed.node(node).namespace)


def wait_connected(bed, nodes, name: str = "myservice", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {node: service(bed, node, name).get("status") for node in nodes}
        if all(state == "Connected" for state in states.values()):
            return
        assert time.monotonic() < deadline, f"not all Connected: {states}"
        time.sleep(1)


def interfaces_in(bed, node: str, pod: str) -> list[str]:
    links = json.loads(in_pod(bed, node, pod, "ip", "-j", "link", check=True).stdout)
    return [link["ifname"] for link in links if link["ifname"].startswith("dt")]


@pytest.fixture(scope="module")
def federation(bed_factory, tmp_path_factory):
    """Eight nodes; the seed's network on node0..2, a second network on node0..1, deployed."""
    bed = bed_factory(nodes=8)
    for node, pod in SEED + JOINERS + [("node0", "b0"), ("node1", "b1")]:
        bed.create_pod(node, pod)
    services = {node: [{"name": "myservice", "domain": "mydomain", "pod": pod}] for node, pod in SEED}
    services["node0"].append({"name": "othernet", "domain": "mydomain", "pod": "b0"})
    services["node1"].append({"name": "othernet", "domain": "mydomain", "pod": "b1"})
    directory = tmp_path_factory.mktemp("inventory")
    inventory = write_inventory(bed, directory / "three.json", services=services)
    result = run_playbook(bed, "playbooks/deploy.yml", inventory=inventory)
    assert all(c["failed"] == 0 for c in recap(result.stdout).values())
    return {"bed": bed, "services": services, "inventory": inventory, "dir": directory}


def test_every_member_is_connected_with_a_handshake(federation):
    bed = federation["bed"]
    wait_connected(bed, ["node0", "node1", "node2"])
    wait_connected(bed, ["node0", "node1"], name="othernet")
    hub = service(bed, "node0")
    assert sorted(hub["peers"]) == ["100.96.0.1", "100.96.0.2", "100.96.0.3"]
    # Each interface can be read as a wg-quick file, without its private key.
    secret = key_secret(bed, "node0")
    private_key = base64.b64decode(secret["data"]["privatekey"]).decode()
    readable = Path(f"/run/dtservice/wireguard/{interfaces_in(bed, 'node0', 'my-pod')[0]}.conf").read_text()
    assert "Address = 100.96.0.1/24" in readable and "ListenPort = 51820" in readable
    assert readable.count("[Peer]") == 2 and private_key not in readable
    assert service(bed, "node0", "othernet")["peers"].keys() == {"100.96.1.1", "100.96.1.2"}


def test_clients_reach_the_server_and_each_other_through_it(federation):
    bed = federation["bed"]
    client_address = {node: next(a for a, e in service(bed, node)["peers"].items()
                                 if "client" in e["labels"].values() and a != "100.96.0.1")
                      for node in ("node1", "node2")}
    # A client's own object lists the server and itself; its own entry is the non-server one.
    assert ping(bed, "node1", "service-pod", "100.96.0.1") == 3
    assert ping(bed, "node2", "worker-pod", "100.96.0.1") == 3
    assert ping(bed, "node1", "service-pod", client_address["node2"]) == 3
    assert ping(bed, "node2", "worker-pod", client_address["node1"]) == 3
    assert ping(bed, "node0", "my-pod", client_address["node2"]) == 3


def test_a_tcp_connection_carries_data_across(federation):
    bed = federation["bed"]
    server = subprocess.Popen(
        ["ip", "netns", "exec", bed.pod_netns("node0", "my-pod"), "python3", "-c",
         "import socket,hashlib; s=socket.create_server(('100.96.0.1', 7000)); s.settimeout(20); "
         "c,_=s.accept(); h=hashlib.sha256(); n=0\n"
         "while True:\n d=c.recv(65536)\n if not d: break\n h.update(d); n+=len(d)\n"
         "print(n, h.hexdigest())"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        payload = ("import hashlib,socket; d=bytes(range(256))*4096; "
                   "c=socket.create_connection(('100.96.0.1',7000),10); c.sendall(d); c.close(); "
                   "print(len(d), hashlib.sha256(d).hexdigest())")
        sent = in_pod(bed, "node2", "worker-pod", "python3", "-c", payload, check=True).stdout.split()
        received, _stderr = server.communicate(timeout=30)
    finally:
        server.kill()
    assert sent[0] == "1048576"
    assert received.split() == sent


def test_two_networks_on_the_same_nodes_stay_isolated(federation):
    bed = federation["bed"]
    assert ping(bed, "node1", "b1", "100.96.1.1") == 3
    # my-pod is only on myservice, b0 only on othernet: neither reaches the other's network.
    assert ping(bed, "node1", "service-pod", "100.96.1.1", count=2) == 0
    assert ping(bed, "node1", "b1", "100.96.0.1", count=2) == 0
    assert interfaces_in(bed, "node0", "my-pod") != interfaces_in(bed, "node0", "b0")


def test_a_second_deploy_changes_nothing(federation):
    result = run_playbook(federation["bed"], "playbooks/deploy.yml", inventory=federation["inventory"])
    counts = recap(result.stdout)
    assert counts and all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts


def test_spoofed_source_is_dropped_by_the_server(federation):
    bed = federation["bed"]
    own = {node: next(a for a, e in service(bed, node)["peers"].items() if a != "100.96.0.1")
           for node in ("node1", "node2")}
    interface = interfaces_in(bed, "node2", "worker-pod")[0]
    in_pod(bed, "node2", "worker-pod", "ip", "addr", "add", f"{own['node1']}/32", "dev", interface, check=True)
    try:
        assert ping(bed, "node2", "worker-pod", "100.96.0.1", count=3, source=own["node1"]) == 0
        assert ping(bed, "node2", "worker-pod", "100.96.0.1", count=2) == 2
    finally:
        in_pod(bed, "node2", "worker-pod", "ip", "addr", "del", f"{own['node1']}/32", "dev", interface)


def test_adding_five_peers_loses_no_packet_on_an_existing_tunnel(federation):
    bed = federation["bed"]
    pinger = subprocess.Popen(["ip", "netns", "exec", bed.pod_netns("node1", "service-pod"),
                               "ping", "-n", "-q", "-i", "0.05", "-c", "600", "100.96.0.1"],
                              stdout=subprocess.PIPE, text=True)
    services = dict(federation["services"])
    for node, pod in JOINERS:
        services[node] = [{"name": "myservice", "domain": "mydomain", "pod": pod}]
    inventory = write_inventory(bed, federation["dir"] / "eight.json", services=services)
    run_playbook(bed, "playbooks/deploy.yml", inventory=inventory)
    federation["inventory"], federation["services"] = inventory, services
    out, _stderr = pinger.communicate(timeout=120)
    summary = next(line for line in out.splitlines() if "received" in line)
    assert " 0% packet loss" in summary, summary
    wait_connected(bed, ["node0", "node1", "node2"] + [n for n, _pod in JOINERS])
    assert len(service(bed, "node0")["peers"]) == 8
    assert ping(bed, "node7", "joiner7", "100.96.0.1") == 3


def remembered_namespace(bed, node: str, pod: str) -> str | None:
    """The name of the namespace the machine's passes remember for the pod (podnet.NamespaceMemory)."""
    ref = bed.node(node)
    uid = kubectl_json(bed, node, "get", "pod", pod, "-n", ref.namespace)["metadata"]["uid"]
    path = podnet.NamespaceMemory().recall(ref.runtime_endpoint, uid)
    return None if path is None else Path(path).name


def test_a_restarted_pod_comes_back_with_the_same_address_and_key(federation):
    bed = federation["bed"]
    before = service(bed, "node2")
    assert remembered_namespace(bed, "node2", "worker-pod") == bed.pod_netns("node2", "worker-pod")
    bed.restart_pod("node2", "worker-pod")
    assert interfaces_in(bed, "node2", "worker-pod") == []
    run_playbook(bed, "playbooks/deploy.yml", inventory=federation["inventory"])
    after = service(bed, "node2")
    assert after["peers"] == before["peers"]
    wait_connected(bed, ["node2"])
    assert ping(bed, "node2", "worker-pod", "100.96.0.1") == 3
    # The old namespace is gone from its path: the pass asked the runtime and remembers the new one.
    assert remembered_namespace(bed, "node2", "worker-pod") == bed.pod_netns("node2", "worker-pod")


def test_deleting_one_member_leaves_the_others_connected_and_nothing_behind(federation):
    bed = federation["bed"]
    leaving = service(bed, "node2")
    address = next(a for a in leaving["peers"] if a != "100.96.0.1")
    interface = interfaces_in(bed, "node2", "worker-pod")[0]
    run_playbook(bed, "playbooks/teardown.yml", "-e", json.dumps({"dtservice_teardown_nodes": ["node2"],
                                                                  "dtservice_teardown_networks": ["myservice"]}),
                 inventory=federation["inventory"])
    node2 = bed.node("node2")
    assert bed.kubectl(node2, "get", "dtservice", "myservice", "-n", node2.namespace, admin=True,
                       check=False).returncode != 0
    assert key_secret(bed, "node2", check=False) is None
    assert interfaces_in(bed, "node2", "worker-pod") == []
    assert not Path(f"/run/dtservice/wireguard/{interface}.conf").exists()
    assert subprocess.run(["pgrep", "-f", f"wireguard-go (--foreground )?{interface}"], capture_output=True,
                          check=False).returncode == 1
    assert address not in service(bed, "node0")["peers"]
    hub_interface = interfaces_in(bed, "node0", "my-pod")[0]
    live_peers = in_pod(bed, "node0", "my-pod", "wg", "show", hub_interface, "allowed-ips", check=True).stdout
    assert f"{address}/32" not in live_peers
    assert ping(bed, "node1", "service-pod", "100.96.0.1") == 3
    # The inventory still declares it: the next deploy re-creates it on the freed address.
    run_playbook(bed, "playbooks/deploy.yml", inventory=federation["inventory"])
    assert address in service(bed, "node2")["peers"]
