"""Key rotation without packet loss, on real pods: the hub's key and a client's key are
replaced while pings run between the two clients through the hub and between a client and
the hub in both directions; not one is lost, and afterwards no pod's interface and no
dtService holds the old key. A pod replaced by a new one keeps its dtService's key."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import rotation
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import public_key_of
from conftest import free_port, key_secret, kubectl_json, run_playbook, write_inventory
from test_daemon_e2e import wait_for
from test_dataplane_e2e import in_pod, interfaces_in, ping, service
from test_tenants import PingLoop

pytestmark = pytest.mark.integration

NETWORK = "rotnet"
PODS = {"node0": "hub-pod", "node1": "client1", "node2": "client2"}
HUB = "100.96.0.1"
ANNOTATION = "sid.sightlineinnovation.com/rotate-key"
DONE = "sid.sightlineinnovation.com/key-rotated"


@pytest.fixture(scope="module")
def federation(bed_factory, tmp_path_factory):
    bed = bed_factory(nodes=3)
    for node, pod in PODS.items():
        bed.create_pod(node, pod)
    services = {node: [{"name": NETWORK, "domain": "mydomain", "pod": pod}] for node, pod in PODS.items()}
    directory = tmp_path_factory.mktemp("rotation")
    inventory = write_inventory(bed, directory / "inventory.json", services=services)
    run_playbook(bed, "playbooks/deploy.yml", inventory=inventory)
    wait_for(lambda: all(service(bed, node, NETWORK).get("status") == "Connected" for node in PODS),
             timeout=60, what="every member Connected")
    return {"bed": bed, "inventory": inventory, "dir": directory}


def address_of(bed, node: str) -> str:
    if node == "node0":
        return HUB
    return next(a for a in service(bed, node, NETWORK)["peers"] if a != HUB)


def secret_of(bed, node: str) -> dict:
    return key_secret(bed, node, NETWORK)


def key_of(bed, node: str) -> str:
    """The public key of the private key the node's key Secret holds."""
    return public_key_of(base64.b64decode(secret_of(bed, node)["data"]["privatekey"]).decode())


def live_keys(bed) -> dict[str, set[str]]:
    """Every public key each pod's interface holds: its own and its peers'."""
    found = {}
    for node, pod in PODS.items():
        interface = interfaces_in(bed, node, pod)[0]
        dump = in_pod(bed, node, pod, "wg", "show", interface, "dump", check=True).stdout.splitlines()
        found[pod] = {dump[0].split("\t")[1]} | {line.split("\t")[0] for line in dump[1:]}
    return found


def hub_handshake(bed, node: str) -> int:
    """The newest handshake (Unix seconds) the node's interface has made with the hub."""
    pod = PODS[node]
    interface = interfaces_in(bed, node, pod)[0]
    lines = in_pod(bed, node, pod, "wg", "show", interface, "latest-handshakes", check=True).stdout.splitlines()
    handshakes = dict(line.split("\t") for line in lines)
    return int(handshakes.get(key_of(bed, "node0"), 0))


def object_keys(bed) -> dict[str, set[str]]:
    """Every public key each dtService holds, in its ``peers`` and ``spec.server``."""
    found = {}
    for node in PODS:
        obj = service(bed, node, NETWORK)
        keys = {entry["publicKey"] for entry in (obj.get("peers") or {}).values()}
        if obj["spec"].get("server"):
            keys.add(obj["spec"]["server"]["publicKey"])
        found[node] = keys
    return found


def ping_routes(bed) -> list[tuple[str, str]]:
    """(node, address): client to client through the hub, client to hub, hub to client."""
    return [("node1", address_of(bed, "node2")), ("node2", address_of(bed, "node1")), ("node1", HUB),
            ("node0", address_of(bed, "node2"))]


def start_pings(bed, directory: Path) -> list[PingLoop]:
    """A ping every 0.1 s on each of ``ping_routes``."""
    loops = []
    for number, (node, address) in enumerate(ping_routes(bed)):
        log = directory / f"ping-{time.monotonic_ns()}-{number}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(["ip", "netns", "exec", bed.pod_netns(node, PODS[node]), "ping", "-n", "-i",
                                        "0.1", "-W", "5", address], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        loops.append(PingLoop(what=f"{PODS[node]} -> {address}", process=process, log=log))
    time.sleep(2)  # every loop is under way before the rotation starts
    return loops


def stop_pings(loops: list[PingLoop]) -> dict[str, tuple[int, list[int]]]:
    time.sleep(2)  # and goes on a little after it
    return {loop.what: loop.stop() for loop in loops}


def assert_none_lost(bed, results: dict[str, tuple[int, list[int]]]) -> None:
    """Every loop sent enough and lost nothing. On a loss, the message says what each pod's
    interface held right then (keys, endpoints, latest handshakes) and whether every path
    answered again after WireGuard's own retry (5 s): a tunnel that comes back by itself lost
    a handshake; one that does not was configured wrong."""
    failed = {what: (sent, lost) for what, (sent, lost) in results.items() if sent <= 30 or lost}
    if not failed:
        return
    held = {pod: in_pod(bed, node, pod, "wg", "show", "all", "dump").stdout for node, pod in PODS.items()}
    time.sleep(6)
    again = {f"{PODS[node]} -> {address}": ping(bed, node, PODS[node], address, count=3)
             for node, address in ping_routes(bed)}
    lines = [f"{what}: {len(lost)} of {sent} lost: {lost}" for what, (sent, lost) in failed.items()]
    lines += ["interfaces right after the loss:"] + [f"{pod}:\n{dump}" for pod, dump in held.items()]
    lines += [f"replies of 3 pings 6 s later: {again}"]
    pytest.fail("\n".join(lines))


def rotated_events(bed, node: str) -> list[dict]:
    items = kubectl_json(bed, node, "get", "events", "-n", bed.node(node).namespace)["items"]
    return [e for e in items if e.get("reason") == "KeyRotated" and e["involvedObject"]["name"] == NETWORK]


def assert_rotated(bed, *, node: str, old: str, value: str) -> str:
    """The node's key was replaced, the old one is nowhere, the request is recorded."""
    new = key_of(bed, node)
    assert new != old
    secret = secret_of(bed, node)
    assert set(secret["data"]) == {"privatekey"}, "the Secret holds only the current private key"
    assert secret["metadata"]["annotations"]["sid.sightlineinnovation.com/public-key"] == new
    # A hub's key is in every interface of its network; a client's in its own and the hub's.
    holders = set(PODS.values()) if node == "node0" else {PODS[node], PODS["node0"]}
    for pod, keys in live_keys(bed).items():
        assert old not in keys, f"{pod}'s interface still holds the old key"
        assert (new in keys) == (pod in holders), f"{pod}'s interface and the new key"
    for other, keys in object_keys(bed).items():
        assert old not in keys, f"the dtService of {other} still holds the old key"
    assert service(bed, node, NETWORK)["metadata"]["annotations"][DONE] == value
    events = rotated_events(bed, node)
    assert events and events[-1]["type"] == "Normal"
    assert all(old not in e["message"] and new not in e["message"] for e in events), "no key in an Event"
    return new


def test_the_hubs_key_is_rotated_with_rotate_yml_and_no_packet_is_lost(federation):
    bed = federation["bed"]
    old = key_of(bed, "node0")
    loops = start_pings(bed, federation["dir"])
    run_playbook(bed, "playbooks/rotate.yml", "-e", json.dumps({"dtservice_rotate_nodes": ["node0"],
                                                                "dtservice_rotate_networks": [NETWORK],
                                                                "dtservice_rotate_token": "hub-1"}),
                 inventory=federation["inventory"])
    assert_none_lost(bed, stop_pings(loops))
    assert_rotated(bed, node="node0", old=old, value="hub-1")
    for node in PODS:
        assert service(bed, node, NETWORK)["status"] == "Connected"


def test_a_client_key_is_rotated_by_its_annotation_and_no_packet_is_lost(federation):
    bed = federation["bed"]
    old, hub_key = key_of(bed, "node1"), key_of(bed, "node0")
    loops = start_pings(bed, federation["dir"])
    node1 = bed.node("node1")
    bed.kubectl(node1, "annotate", "dtservice", NETWORK, "-n", node1.namespace, f"{ANNOTATION}=client-1", admin=True)
    run_playbook(bed, "playbooks/reconcile.yml", inventory=federation["inventory"])
    # The pass called the client Connected on a handshake made with its new key, not on the
    # session of the old one, which WireGuard goes on counting after the switch.
    made = rotation.key_created(secret_of(bed, "node1"))
    assert made is not None
    assert hub_handshake(bed, "node1") >= int(made.timestamp())
    assert_none_lost(bed, stop_pings(loops))
    assert_rotated(bed, node="node1", old=old, value="client-1")
    assert key_of(bed, "node0") == hub_key, "only the client's key changed"


def test_a_request_is_served_once(federation):
    bed = federation["bed"]
    before = {node: key_of(bed, node) for node in PODS}
    run_playbook(bed, "playbooks/reconcile.yml", inventory=federation["inventory"])
    assert {node: key_of(bed, node) for node in PODS} == before


def test_a_replaced_pod_keeps_its_dtservices_key(federation):
    bed = federation["bed"]
    before = key_of(bed, "node2")
    bed.delete_pod("node2", PODS["node2"])
    bed.create_pod("node2", PODS["node2"])
    run_playbook(bed, "playbooks/reconcile.yml", inventory=federation["inventory"])
    wait_for(lambda: service(bed, "node2", NETWORK).get("status") == "Connected", timeout=60,
             what="the replaced pod Connected")
    assert key_of(bed, "node2") == before
    assert before in live_keys(bed)[PODS["node2"]]


# -- the reconciler daemon: a request by annotation, and a key older than the maximum age ------

SERVICE_YAML = """apiVersion: sid.sightlineinnovation.com/v1
kind: dtService
metadata:
  name: {name}
spec:
  domainSelector: mydomain
  podSelector: {pod}
"""


@pytest.fixture(scope="module")
def daemon(bed_factory, tmp_path_factory):
    """A bed of its own with the daemon (metrics on, keys rotated after a day); the network
    made with kubectl only."""
    bed = bed_factory(nodes=3)
    for node, pod in PODS.items():
        bed.create_pod(node, pod)
    directory = tmp_path_factory.mktemp("rotation-daemon")
    inventory = Path(write_inventory(bed, directory / "inventory.json", services={}, daemon=True))
    written = json.loads(inventory.read_text())
    port = free_port()
    written["federation"]["vars"].update(dtservice_daemon_metrics_port=port, dtservice_daemon_key_max_age_seconds=86400)
    inventory.write_text(json.dumps(written))
    run_playbook(bed, "playbooks/deploy.yml", inventory=str(inventory))
    for node, pod in PODS.items():
        bed.kubectl(bed.node(node), "apply", "-n", bed.node(node).namespace, "-f", "-", admin=True,
                    stdin=SERVICE_YAML.format(name=NETWORK, pod=pod))
        if node == "node0":  # the first to register a network serves it
            wait_for(lambda: (service(bed, "node0", NETWORK) or {}).get("status") == "Connected", timeout=120,
                     what="the hub Connected")
    wait_for(lambda: all((service(bed, node, NETWORK) or {}).get("status") == "Connected" for node in PODS),
             timeout=120, what="every member Connected")
    return {"bed": bed, "dir": directory, "metrics": port}


def rotations_counted(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    found = {}
    for line in text.splitlines():
        match = re.match(r'dtservice_key_rotations_total\{node="([^"]+)"\} ([\d.e+]+)', line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def everywhere(bed, *, node: str, old: str) -> bool:
    """The node's key is rotated and taken on by every peer, live and in the objects."""
    new = key_of(bed, node)
    holders = set(PODS.values()) if node == "node0" else {PODS[node], PODS["node0"]}
    return new != old and all(old not in keys and (new in keys) == (pod in holders)
                              for pod, keys in live_keys(bed).items()) \
        and all(old not in keys for keys in object_keys(bed).values())


def test_the_daemon_rotates_the_hubs_key_on_request_and_no_packet_is_lost(daemon):
    bed = daemon["bed"]
    old = key_of(bed, "node0")
    loops = start_pings(bed, daemon["dir"])
    node0 = bed.node("node0")
    bed.kubectl(node0, "annotate", "dtservice", NETWORK, "-n", node0.namespace, f"{ANNOTATION}=daemon-1", admin=True)
    wait_for(lambda: everywhere(bed, node="node0", old=old), timeout=60, what="every peer to hold the hub's new key")
    assert_none_lost(bed, stop_pings(loops))
    assert_rotated(bed, node="node0", old=old, value="daemon-1")
    assert rotations_counted(daemon["metrics"]).get("node0") == 1


def test_the_daemon_rotates_a_key_older_than_the_maximum_age(daemon):
    bed = daemon["bed"]
    node2 = bed.node("node2")
    old = key_of(bed, "node2")
    bed.kubectl(node2, "annotate", "secret", contract.key_secret_name(node2.namespace, NETWORK),
                "-n", contract.KEYS_NAMESPACE, "--overwrite",
                "sid.sightlineinnovation.com/key-created=2020-01-01T00:00:00Z", admin=True)
    # Any change of the node's objects starts its run; the key's age is checked in every run.
    bed.kubectl(node2, "annotate", "dtservice", NETWORK, "-n", node2.namespace, "example.com/touched=1", admin=True)
    wait_for(lambda: everywhere(bed, node="node2", old=old), timeout=60, what="node2's old key to be replaced")
    secret = secret_of(bed, "node2")
    assert set(secret["data"]) == {"privatekey"}
    assert secret["metadata"]["annotations"]["sid.sightlineinnovation.com/key-created"] > "2026"
    assert any("maximum age" in e["message"] for e in rotated_events(bed, "node2"))
    assert rotations_counted(daemon["metrics"]).get("node2") == 1
