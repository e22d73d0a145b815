"""The seed's kubectl workflow, end to end: the reconciler daemon serves `kubectl apply` and
`kubectl delete` with no ansible-playbook call by the test (deploy.yml only installs it)."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import time
from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from conftest import key_secret, kubectl_json, run_playbook, write_inventory
from test_dataplane_e2e import interfaces_in, ping

pytestmark = pytest.mark.integration

SEED_SERVER = """apiVersion: sid.sightlineinnovation.com/v1
kind: dtService
metadata:
  name: myservice
spec:
  domainSelector: mydomain
  podSelector: {pod}
"""


def apply(bed, node: str, pod: str, name: str = "myservice") -> float:
    started = time.monotonic()
    bed.kubectl(bed.node(node), "apply", "-n", bed.node(node).namespace, "-f", "-", admin=True,
                stdin=SEED_SERVER.format(pod=pod).replace("name: myservice", f"name: {name}"))
    return started


def get(bed, node: str, name: str = "myservice") -> dict | None:
    result = bed.kubectl(bed.node(node), "get", "dtservice", name, "-n", bed.node(node).namespace, "-o", "json",
                         admin=True, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def connected(bed, node: str, name: str = "myservice") -> bool:
    return (get(bed, node, name) or {}).get("status") == "Connected"


def daemon_pid(bed) -> int:
    return int((bed.dir / "reconciler" / "reconciler.pid").read_text())


@pytest.fixture(scope="module")
def seeded(bed_factory, tmp_path_factory):
    bed = bed_factory(nodes=4)
    for node, pod in [("node0", "my-pod"), ("node1", "service-pod")]:
        bed.create_pod(node, pod)
    inventory = write_inventory(bed, tmp_path_factory.mktemp("inv") / "daemon.json", services={}, daemon=True)
    run_playbook(bed, "playbooks/deploy.yml", inventory=inventory)
    assert Path(f"/proc/{daemon_pid(bed)}").exists(), "deploy.yml started the reconciler"
    return {"bed": bed, "inventory": inventory}


def test_seed_first_yaml_creates_the_network(seeded):
    bed = seeded["bed"]
    apply(bed, "node0", "my-pod")
    wait_for(lambda: connected(bed, "node0"), timeout=90, what="node0 Connected")
    service = get(bed, "node0")
    assert list(service["peers"]) == ["100.96.0.1"]
    assert list(service["peers"]["100.96.0.1"]["labels"].values()) == ["server"]
    assert "server" not in service["spec"]


def test_seed_second_yaml_joins_and_the_pods_talk(seeded):
    bed = seeded["bed"]
    apply(bed, "node1", "service-pod")
    wait_for(lambda: connected(bed, "node1"), timeout=90, what="node1 Connected")
    hub, joiner = get(bed, "node0"), get(bed, "node1")
    assert joiner["spec"]["server"] == {"endpoint": "198.18.0.10:51820", "peer": "100.96.0.0/24",
                                        "publicKey": hub["peers"]["100.96.0.1"]["publicKey"]}
    wait_for(lambda: sorted(get(bed, "node0")["peers"]) == ["100.96.0.1", "100.96.0.2"], timeout=60,
             what="the server to list the joiner")
    assert sorted(joiner["peers"]) == ["100.96.0.1", "100.96.0.2"]
    assert ping(bed, "node1", "service-pod", "100.96.0.1") == 3
    assert ping(bed, "node0", "my-pod", "100.96.0.2") == 3


def test_a_dtservice_made_before_its_pod_connects_when_the_pod_runs(seeded):
    bed = seeded["bed"]
    apply(bed, "node2", "late-pod")
    wait_for(lambda: (get(bed, "node2") or {}).get("status") == "WaitingForPod", timeout=60, what="WaitingForPod")
    events = kubectl_json(bed, "node2", "get", "events", "-n", bed.node("node2").namespace)["items"]
    assert any(e["reason"] == "WaitingForPod" and "late-pod" in e["message"] for e in events)
    bed.create_pod("node2", "late-pod")
    wait_for(lambda: connected(bed, "node2"), timeout=90, what="node2 Connected once its pod runs")
    assert ping(bed, "node2", "late-pod", "100.96.0.1") == 3


def test_a_hand_edit_of_peers_is_reverted(seeded):
    bed = seeded["bed"]
    node0 = bed.node("node0")
    before = get(bed, "node0")["peers"]
    bogus = {"peers": {"100.96.0.2": None,
                       "100.96.0.99": {"labels": {}, "publicKey": before["100.96.0.1"]["publicKey"]}}}
    bed.kubectl(node0, "patch", "dtservice", "myservice", "-n", node0.namespace, "--type=merge", "-p",
                json.dumps(bogus), admin=True)
    wait_for(lambda: get(bed, "node0")["peers"] == before, timeout=60, what="the peers edit to be reverted")


def test_kubectl_delete_of_a_joiner_cleans_up_everywhere(seeded):
    bed = seeded["bed"]
    node2 = bed.node("node2")
    address = next(a for a in get(bed, "node2")["peers"] if a != "100.96.0.1")
    bed.kubectl(node2, "delete", "dtservice", "myservice", "-n", node2.namespace, "--wait=true", "--timeout=90s",
                admin=True)
    assert get(bed, "node2") is None
    wait_for(lambda: address not in get(bed, "node0")["peers"], timeout=60, what="the server to drop the peer")
    assert interfaces_in(bed, "node2", "late-pod") == []
    assert key_secret(bed, "node2", check=False) is None
    assert ping(bed, "node1", "service-pod", "100.96.0.1") == 3


def test_sigkill_mid_run_then_restart_converges_without_duplicates(seeded):
    bed = seeded["bed"]
    bed.create_pod("node3", "crash-pod")
    apply(bed, "node3", "crash-pod")
    time.sleep(1.0)  # the daemon has picked the change up and is running
    killed = daemon_pid(bed)
    os.kill(killed, signal.SIGKILL)
    run_playbook(bed, "playbooks/deploy.yml", inventory=seeded["inventory"])  # starts it again
    # A new daemon, also where nobody reaps the killed one (a zombie still answers kill -0).
    assert daemon_pid(bed) != killed
    wait_for(lambda: connected(bed, "node3"), timeout=120, what="node3 Connected after the restart")
    wait_for(lambda: len(get(bed, "node0")["peers"]) == 3, timeout=60, what="the server to list three peers")
    hub = get(bed, "node0")
    keys = [entry["publicKey"] for entry in hub["peers"].values()]
    assert len(set(hub["peers"])) == len(set(keys)) == 3
    for node in ("node0", "node1", "node3"):
        namespace = bed.node(node).namespace
        keys = kubectl_json(bed, node, "get", "secrets", "-n", contract.KEYS_NAMESPACE,
                            "-l", f"{contract.KEY_NAMESPACE_LABEL}={namespace}")["items"]
        assert [s["metadata"]["name"] for s in keys] == [contract.key_secret_name(namespace, "myservice")], node
    assert len(interfaces_in(bed, "node3", "crash-pod")) == 1


def test_an_api_server_restart_does_not_stop_the_daemon(seeded):
    bed = seeded["bed"]
    bed.restart_apiserver(0)
    apply(bed, "node2", "late-pod", name="afterrestart")
    wait_for(lambda: connected(bed, "node2", "afterrestart"), timeout=120, what="a network made after the restart")
    assert Path(f"/proc/{daemon_pid(bed)}").exists()


def test_ten_joins_each_connect(seeded, record_property):
    """Ten networks served on node0, each joined from node1; the apply-to-Connected median is
    recorded for the report (speed targets are the benchmarks' business, not this test's)."""
    bed = seeded["bed"]
    for index in range(10):
        apply(bed, "node0", "my-pod", name=f"join{index}")
    for index in range(10):
        wait_for(lambda index=index: connected(bed, "node0", f"join{index}"), timeout=120, what="servers Connected")
    took = []
    for index in range(10):
        started = apply(bed, "node1", "service-pod", name=f"join{index}")
        wait_for(lambda index=index: connected(bed, "node1", f"join{index}"), timeout=120, what="join Connected")
        took.append(time.monotonic() - started)
    record_property("apply_to_connected_median_s", round(statistics.median(took), 2))
    print(f"apply-to-Connected over 10 joins: median {statistics.median(took):.2f}s, max {max(took):.2f}s")


def runs_of(bed, node: str, *, since: float, ended: bool = False) -> list[dict]:
    """The daemon's runs that took ``node`` (as their node or a companion), started (or ended)
    after ``since``."""
    runs = []
    for line in (bed.dir / "reconciler" / "reconciler.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "reconciled" and entry["ts"] - (0 if ended else entry["seconds"]) >= since \
                and node in (entry["node"], *entry.get("with_nodes", [])):
            runs.append(entry)
    return runs


def wait_quiet(bed, node: str, *, seconds: float, timeout: float = 120) -> None:
    """Until no run took ``node`` for ``seconds`` (the earlier tests' networks have settled)."""
    deadline = time.monotonic() + timeout
    since = time.time()
    while time.time() - since < seconds:
        assert time.monotonic() < deadline, f"{node} never quiet for {seconds} s"
        if runs_of(bed, node, since=since, ended=True):
            since = time.time()
        time.sleep(0.5)


def test_one_apply_is_one_run_of_a_converged_node(seeded):
    """The run's own writes (finalizer, status, peers, the registry, the pod's label) come back
    through the watch; they are its echoes and start no second run."""
    bed = seeded["bed"]
    wait_quiet(bed, "node0", seconds=4)
    applied = time.time()
    apply(bed, "node0", "my-pod", name="solo")
    wait_for(lambda: connected(bed, "node0", "solo") and runs_of(bed, "node0", since=applied), timeout=90,
             what="solo Connected")
    time.sleep(8)  # time for any echo to start a run (the debounce is 0.05 s)
    # A resync (every 15 s) may be going as the apply comes and serve solo itself; the apply,
    # held until that run ends, then makes one run that finds nothing to do. A resync falling
    # due while the apply waits (its debounce, or a run) does not rename the apply's run.
    # Either way one run is started by the apply, and none by an echo of a run's writes (it
    # would name a MODIFIED event of the object written).
    started = [r for r in runs_of(bed, "node0", since=applied) if r.get("cause") != "resync"]
    assert len(started) == 1, started
    assert re.fullmatch(r"dtservices/solo@\d+ ADDED", started[0].get("because") or ""), started
    # The log is in the order runs end: the first to report solo Connected made it so.
    ended = runs_of(bed, "node0", since=applied, ended=True)
    serving = next(r for r in ended if r["services"].get("solo") == "Connected")
    assert serving["writes"] > 0, ended
