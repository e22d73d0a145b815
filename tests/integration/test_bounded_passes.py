"""Passes stay bounded when a node is crowded: twenty clients whose hub does not answer cost one
handshake timeout, not twenty, and the other networks of the same pass are served; a port that
another process holds on a node is never given to (or kept by) a hub there.

One bed of 22 federation nodes on three kubelet machines. ``crowd`` spans node0..node20 (hub
on node0); ``calm`` spans node21, node1 and node2 (home and hubs on node21). Every pass is the
daemon's own (``playbooks/reconcile.yml``, one ``dtservice_node`` call per machine); the daemon
itself is left out, so that each pass is the test's and can be timed."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from conftest import run_playbook
from test_daemon_e2e import get
from test_tenants import start_ping

pytestmark = pytest.mark.integration

CLIENTS = [f"node{i}" for i in range(1, 21)]
DOMAINS = [{"name": "crowd", "members": ["node0", *CLIENTS]},
           {"name": "calm", "members": ["node21", "node1", "node2"], "pool": "100.104.0.0/16"}]
HANDSHAKE_TIMEOUT = 10
# The first port of every node's range (contract.DEFAULT_PORT_RANGE): what a foreign process
# takes on node21 before any network is made there.
TAKEN_PORT = 51820
MANIFEST = """apiVersion: sid.sightlineinnovation.com/v1
kind: dtService
metadata:
  name: {name}
spec:
  domainSelector: {domain}
  podSelector: {pod}
"""


def pod_of(node: str) -> str:
    return f"p{node[len('node'):]}"


def apply(bed, node: str, name: str, domain: str) -> None:
    bed.kubectl(bed.node(node), "apply", "-n", bed.node(node).namespace, "-f", "-", admin=True,
                stdin=MANIFEST.format(name=name, domain=domain, pod=pod_of(node)))


def status(bed, node: str, name: str) -> str | None:
    return (get(bed, node, name) or {}).get("status")


def endpoint(bed, network: str, domain: str, home: str) -> str:
    found = bed.kubectl(bed.node(home), "get", "dtdomain", domain, "-n", bed.node(home).namespace, "-o",
                        f"jsonpath={{.status.networks.{network}.endpoint}}", admin=True)
    return found.stdout.strip()


def why(result: subprocess.CompletedProcess) -> str:
    """The failed tasks' messages and node errors of a run, which its long result buries."""
    found = re.findall(r'"(?:msg|node_errors)": ("[^"]*"|\{[^}]*\})', result.stdout)
    return "\n".join(found) or why(result)


def one_pass(bed, inventory: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = run_playbook(bed, "playbooks/reconcile.yml", "-e",
                          f"dtservice_pass_handshake_timeout={HANDSHAKE_TIMEOUT}",
                          inventory=inventory, check=False)
    return time.monotonic() - started, result


def udp_dropped(bed, node: str, port: int, *, drop: bool) -> None:
    """Every datagram to ``port`` dropped (or no longer) where the node's address lives: the hub
    there stays up but answers nobody."""
    subprocess.run(["ip", "netns", "exec", bed.node(node).netns, "iptables", "-A" if drop else "-D", "INPUT",
                    "-p", "udp", "--dport", str(port), "-j", "DROP"], check=True)


@pytest.fixture(scope="module")
def crowd(bed_factory, tmp_path_factory):
    bed = bed_factory(nodes=22)
    where = tmp_path_factory.mktemp("crowd")
    for index in range(22):
        bed.create_pod(f"node{index}", pod_of(f"node{index}"), wait=False)
    for index in range(22):
        bed.wait_pod_running(f"node{index}", pod_of(f"node{index}"))
    # Something else than the provisioner listens on node21's first port (another WireGuard, say).
    squatter = subprocess.Popen(
        ["ip", "netns", "exec", bed.node("node21").netns, sys.executable, "-c",
         "import socket, time\n"
         f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', {TAKEN_PORT}))\n"
         "time.sleep(100000)"], stdin=subprocess.DEVNULL)
    inventory = bed.write_inventory(where / "crowd.json", services={}, domains=DOMAINS, daemon=False)
    try:
        run_playbook(bed, "playbooks/deploy.yml", inventory=inventory)
        yield {"bed": bed, "inventory": inventory, "where": where, "squatter": squatter}
    finally:
        squatter.kill()
        squatter.wait(timeout=10)


def test_a_hub_is_not_given_a_port_another_process_holds(crowd):
    bed = crowd["bed"]
    # The first pod of a network is its hub: the hubs' pass comes before their clients are made.
    apply(bed, "node0", "crowd", "crowd")
    apply(bed, "node21", "calm", "calm")
    _elapsed, result = one_pass(bed, crowd["inventory"])
    assert result.returncode == 0, why(result)
    apply(bed, "node1", "calm", "calm")
    _elapsed, result = one_pass(bed, crowd["inventory"])
    assert result.returncode == 0, why(result)
    assert crowd["squatter"].poll() is None, "the other process still holds its port"
    calm_endpoint = endpoint(bed, "calm", "calm", "node21")
    assert calm_endpoint.startswith(bed.node("node21").address + ":")
    assert int(calm_endpoint.rsplit(":", 1)[1]) != TAKEN_PORT
    assert [status(bed, "node0", "crowd"), status(bed, "node21", "calm"), status(bed, "node1", "calm")] \
        == ["Connected"] * 3


def test_twenty_clients_of_an_unreachable_hub_cost_one_timeout_and_the_rest_is_served(crowd):
    bed = crowd["bed"]
    # A new network whose client comes in the same pass as the crowd's: its hub first.
    apply(bed, "node21", "fresh", "calm")
    _elapsed, result = one_pass(bed, crowd["inventory"])
    assert result.returncode == 0, why(result)
    calm_hub = next(a for a, e in get(bed, "node21", "calm")["peers"].items() if "server" in e["labels"].values())
    loop = start_ping(bed, "node1", pod_of("node1"), calm_hub, crowd["where"] / "calm.log")
    crowd_port = int(endpoint(bed, "crowd", "crowd", "node0").rsplit(":", 1)[1])
    udp_dropped(bed, "node0", crowd_port, drop=True)
    try:
        for node in CLIENTS:
            apply(bed, node, "crowd", "crowd")
        # In the same pass, a new client of another domain's network, on a node (and machine) of the crowd.
        apply(bed, "node2", "fresh", "calm")
        elapsed, result = one_pass(bed, crowd["inventory"])
        statuses = {node: status(bed, node, "crowd") for node in CLIENTS}
        assert status(bed, "node0", "crowd") == "Connected", "the hub itself is up, it is only cut off"
        assert set(statuses.values()) == {Status.SERVER_UNREACHABLE}, statuses
        assert [status(bed, "node21", "fresh"), status(bed, "node2", "fresh")] == ["Connected"] * 2
        assert status(bed, "node1", "calm") == "Connected"
        # Waited one after another, twenty clients would take 20 timeouts; side by side, about
        # one, plus a pass of 22 nodes on this 2-core machine.
        assert elapsed < 5 * HANDSHAKE_TIMEOUT, f"the pass took {elapsed:.1f} s"
        assert elapsed < len(CLIENTS) * HANDSHAKE_TIMEOUT / 4
        print(f"pass with 20 unanswered clients: {elapsed:.1f} s (handshake timeout {HANDSHAKE_TIMEOUT} s)")
    finally:
        udp_dropped(bed, "node0", crowd_port, drop=False)
    _elapsed, result = one_pass(bed, crowd["inventory"])
    assert result.returncode == 0, why(result)
    assert {node: status(bed, node, "crowd") for node in CLIENTS} == {node: "Connected" for node in CLIENTS}
    sent, lost = loop.stop()
    assert sent > 10 and lost == [], f"calm lost {lost} of {sent} while the crowd waited"


def test_a_hub_whose_port_was_taken_before_it_listened_moves_and_its_clients_follow(crowd):
    bed = crowd["bed"]
    # The network is registered while its pod does not run yet, so its hub does not listen.
    bed.kubectl(bed.node("node21"), "apply", "-n", bed.node("node21").namespace, "-f", "-", admin=True,
                stdin=MANIFEST.format(name="late", domain="calm", pod="late-pod"))
    one_pass(bed, crowd["inventory"])
    first = endpoint(bed, "late", "calm", "node21")
    assert first, "the network is registered before its pod runs"
    port = int(first.rsplit(":", 1)[1])
    squatter = subprocess.Popen(
        ["ip", "netns", "exec", bed.node("node21").netns, sys.executable, "-c",
         "import socket, time\n"
         f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', {port}))\n"
         "time.sleep(100000)"], stdin=subprocess.DEVNULL)
    try:
        bed.create_pod("node21", "late-pod")
        apply(bed, "node2", "late", "calm")
        _elapsed, result = one_pass(bed, crowd["inventory"])
        assert result.returncode == 0, why(result)
        moved = endpoint(bed, "late", "calm", "node21")
        assert moved != first and int(moved.rsplit(":", 1)[1]) != port
        assert [status(bed, "node21", "late"), status(bed, "node2", "late")] == ["Connected"] * 2
        # The client's interface took the endpoint from the registry; its own record of it (the
        # seed's Spec.Server) may have been written just before the move, and follows in the next pass.
        one_pass(bed, crowd["inventory"])
        assert get(bed, "node2", "late")["spec"]["server"]["endpoint"] == moved
        assert squatter.poll() is None
    finally:
        squatter.kill()
        squatter.wait(timeout=10)
