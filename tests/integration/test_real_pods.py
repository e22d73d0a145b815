"""Real pods run by kubelet, served by the reconciler daemon: the pod's network namespace
comes from the container runtime by the pod's UID, proven by the pod's IP, and follows the
pod through its life (a Deployment's replacement, a restarted container, a move to another
node); nothing a tenant writes on a pod steers the agent into another namespace."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.data import podnet
from conftest import kubectl_json, run_playbook
from netns_fixture import wireguard_go_pids
from test_daemon_e2e import apply, connected, get, wait_for
from test_dataplane_e2e import interfaces_in, ping

pytestmark = pytest.mark.integration

DEPLOYMENT = "dep-client"
REPLACEMENTS = 5


@pytest.fixture(scope="module")
def served(bed_factory, tmp_path_factory):
    """A hub (my-pod on node0), a bare client (service-pod on node2) and a client that is a
    Deployment's pod on node1, all applied with kubectl and served by the daemon, which deploy
    started over SSH."""
    bed = bed_factory(nodes=3)
    bed.create_pod("node0", "my-pod")
    bed.create_pod("node2", "service-pod")
    # Ansible reaches every kubelet machine over SSH, as it reaches a remote federation node:
    # the modules and the daemon's runs execute there (AnsiballZ, the machine's Python).
    inventory = bed.write_inventory(tmp_path_factory.mktemp("inv") / "pods.json", services={}, daemon=True, ssh=True)
    run_playbook(bed, "playbooks/deploy.yml", inventory=inventory)
    apply(bed, "node0", "my-pod")
    wait_for(lambda: connected(bed, "node0"), timeout=90, what="the hub Connected")
    apply(bed, "node2", "service-pod")
    node1 = bed.node("node1")
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": node1.namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": DEPLOYMENT}},
                 "template": {"metadata": {"labels": {"app": DEPLOYMENT}},
                              "spec": bed.pod_manifest("node1", "unused")["spec"]}},
    }
    bed.kubectl(node1, "apply", "-f", "-", admin=True, stdin=json.dumps(deployment))
    apply(bed, "node1", DEPLOYMENT)
    for node in ("node1", "node2"):
        wait_for(lambda node=node: connected(bed, node), timeout=120, what=f"{node} Connected")
    return bed


def deployment_pod(bed) -> dict:
    node = bed.node("node1")
    pods = kubectl_json(bed, "node1", "get", "pods", "-n", node.namespace, "-l", f"app={DEPLOYMENT}")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    return running[0] if len(running) == 1 else {}


def own_entry(service: dict) -> tuple[str, str]:
    """(overlay address, public key) a dtService records for itself."""
    server_key = (service.get("spec", {}).get("server") or {}).get("publicKey")
    own = [(a, e["publicKey"]) for a, e in service["peers"].items() if e["publicKey"] != server_key]
    assert len(own) == 1, service["peers"]
    return own[0]


def test_a_deployments_replacement_pod_reconnects_with_its_address_and_key(served):
    bed = served
    address, key = own_entry(get(bed, "node1"))
    assert ping(bed, "node2", "service-pod", address) == 3, "client to client through the hub before"
    outages = []
    for _replacement in range(REPLACEMENTS):
        old = deployment_pod(bed)
        node = bed.node("node1")
        deleted = time.monotonic()
        bed.kubectl(node, "delete", "pod", old["metadata"]["name"], "-n", node.namespace, "--wait=false", admin=True)
        wait_for(lambda old=old: (deployment_pod(bed).get("metadata") or {}).get("uid")
                 not in (None, old["metadata"]["uid"]), timeout=120, what="the replacement pod")
        new = deployment_pod(bed)
        assert new["metadata"]["name"] != old["metadata"]["name"]

        # Until it is gone (its grace period, at its kubelet's pace) the old pod may still
        # answer through the hub: the replacement counts once it holds the interface, the
        # old pod's wireguard-go has gone (one process, the new one), and the hub's traffic
        # gets an answer. (A ping alone once passed on the old pod's answer, under load.)
        def replaced(name: str = new["metadata"]["name"]) -> bool:
            names = interfaces_in(bed, "node1", name)
            return len(names) == 1 and len(wireguard_go_pids(names[0])) == 1 \
                and ping(bed, "node2", "service-pod", address, count=1) == 1

        wait_for(replaced, timeout=120, what="traffic through the hub to the replacement, and no other interface")
        outages.append(time.monotonic() - deleted)
        service = get(bed, "node1")
        assert service["status"] == "Connected"
        assert own_entry(service) == (address, key), "the same overlay address and key"
    print(f"\nDeployment pod deleted -> first ping answered through the hub: median "
          f"{statistics.median(outages):.2f} s over {len(outages)} ({', '.join(f'{o:.2f}' for o in outages)})")
    # The hub needed no change: its table still lists the client under the same key.
    assert get(bed, "node0")["peers"][address]["publicKey"] == key


def test_a_restarted_container_keeps_its_sandbox_and_its_interface(served):
    bed = served
    node = bed.node("node2")
    netns = bed.pod_netns("node2", "service-pod")
    interfaces = interfaces_in(bed, "node2", "service-pod")
    container = bed.crictl(node.runtime_endpoint, "ps", "-q", "--label",
                           "io.kubernetes.pod.name=service-pod").stdout.split()[0]
    bed.crictl(node.runtime_endpoint, "stop", container)
    wait_for(lambda: kubectl_json(bed, "node2", "get", "pod", "service-pod", "-n", node.namespace)["status"]
             ["containerStatuses"][0]["restartCount"] >= 1, timeout=120, what="kubelet to restart the container")
    assert bed.pod_netns("node2", "service-pod") == netns
    assert interfaces_in(bed, "node2", "service-pod") == interfaces
    assert ping(bed, "node2", "service-pod", "100.96.0.1") == 3


def test_both_lookups_find_the_same_namespace_and_a_dead_runtime_falls_back(served):
    bed = served
    node = bed.node("node2")
    pod = kubectl_json(bed, "node2", "get", "pod", "service-pod", "-n", node.namespace)
    inode = os.stat(f"/run/netns/{bed.pod_netns('node2', 'service-pod')}").st_ino
    cri = podnet.RuntimeView(runtime_endpoint=node.runtime_endpoint, methods=("cri",)).network_namespace(pod)
    cgroup = podnet.RuntimeView(runtime_endpoint=node.runtime_endpoint, methods=("cgroup",)).network_namespace(pod)
    assert cri.startswith("/var/run/netns/cni-") and cgroup.startswith("/proc/")
    assert os.stat(cri).st_ino == os.stat(cgroup).st_ino == inode
    dead = f"unix://{bed.dir}/no-such-runtime.sock"
    with pytest.raises(podnet.PodLookupError):
        podnet.RuntimeView(runtime_endpoint=dead, methods=("cri",)).network_namespace(pod)
    fallback = podnet.RuntimeView(runtime_endpoint=dead, methods=("cri", "cgroup")).network_namespace(pod)
    assert os.stat(fallback).st_ino == inode
    # Another pod's IP does not match this namespace: the find is refused, not used.
    forged = {**pod, "status": {**pod["status"], "podIP": "198.19.9.9", "podIPs": [{"ip": "198.19.9.9"}]}}
    with pytest.raises(podnet.PodLookupError) as refused:
        podnet.RuntimeView(runtime_endpoint=node.runtime_endpoint).network_namespace(forged)
    assert refused.value.refused


def test_a_runtime_listed_ahead_serves_the_lookup_without_another_crictl(served):
    """A pass lists the runtime while it reconciles (``list_ahead``); the interfaces' pod
    lookups then find that listing, and run no crictl of their own."""
    bed = served
    node = bed.node("node2")
    pod = kubectl_json(bed, "node2", "get", "pod", "service-pod", "-n", node.namespace)
    log = Path(bed.dir) / "crictl-runs.log"
    counting = Path(bed.dir) / "counting-crictl"
    counting.write_text(f'#!/bin/sh\necho "$5" >> {log}\nexec {shutil.which("crictl")} "$@"\n')
    counting.chmod(0o755)
    view = podnet.RuntimeView(runtime_endpoint=node.runtime_endpoint, methods=("cri",), crictl=str(counting))
    view.list_ahead()
    listed = log.read_text().split()
    assert listed == ["pods", "inspectp"], listed  # crictl --runtime-endpoint E --timeout T <command>
    assert view.network_namespace(pod).startswith("/var/run/netns/cni-")
    assert log.read_text().split() == listed, "the lookup listed the runtime again"


def host_links() -> set[str]:
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(links)}


def test_a_tenant_pod_annotated_with_another_namespace_gets_its_interface_only_at_home(served):
    bed = served
    node = bed.node("node2")
    victim = bed.pod_netns("node2", "service-pod")
    victim_links = interfaces_in(bed, "node2", "service-pod")
    before_host = host_links()
    manifest = bed.pod_manifest("node2", "intruder")
    manifest["metadata"]["annotations"] = {
        "dtservice.sightlineinnovation.com/netns": f"/run/netns/{victim}",
        "dtservice.sightlineinnovation.com/netns-alt": "/proc/1/ns/net"}
    bed.kubectl(node, "apply", "-f", "-", admin=True, stdin=json.dumps(manifest))
    bed.wait_pod_running("node2", "intruder")
    apply(bed, "node2", "intruder", name="intruder-net")
    wait_for(lambda: connected(bed, "node2", "intruder-net"), timeout=120, what="the intruder's own network")
    assert len(interfaces_in(bed, "node2", "intruder")) == 1
    assert interfaces_in(bed, "node2", "service-pod") == victim_links, "the other pod is untouched"
    assert {i for i in host_links() - before_host if i.startswith("dt")} == set(), "nothing in the host namespace"
    # A pod on the host's network never gets one: its namespace is the machine's.
    host_pod = bed.pod_manifest("node2", "hostnet")
    host_pod["spec"]["hostNetwork"] = True
    bed.kubectl(node, "apply", "-f", "-", admin=True, stdin=json.dumps(host_pod))
    apply(bed, "node2", "hostnet", name="hostnet-net")
    wait_for(lambda: (get(bed, "node2", "hostnet-net") or {}).get("status") == "PodRefused", timeout=120,
             what="PodRefused for a host-network pod")
    assert {i for i in host_links() - before_host if i.startswith("dt")} == set()


def test_a_pod_on_an_unserved_node_is_reported_then_served_when_it_moves(served):
    bed = served
    node = bed.node("node2")
    # node2's namespace, but scheduled on node0's kubelet, which node2's agent does not serve.
    bed.kubectl(node, "apply", "-f", "-", admin=True,
                stdin=json.dumps(bed.pod_manifest("node2", "roamer", kubelet_node="node0")))
    bed.wait_pod_running("node2", "roamer")
    apply(bed, "node2", "roamer", name="roamer-net")
    wait_for(lambda: (get(bed, "node2", "roamer-net") or {}).get("status") == "PodElsewhere", timeout=120,
             what="PodElsewhere")
    events = kubectl_json(bed, "node2", "get", "events", "-n", node.namespace)["items"]
    assert any(e["reason"] == "PodElsewhere" and "node0" in e["message"] for e in events)
    bed.delete_pod("node2", "roamer")
    bed.create_pod("node2", "roamer")
    wait_for(lambda: connected(bed, "node2", "roamer-net"), timeout=120, what="roamer-net Connected after the move")
    assert len(interfaces_in(bed, "node2", "roamer")) == 1


def test_a_pending_pod_waits_and_a_deleted_pod_leaves_no_interface(served):
    bed = served
    node = bed.node("node2")
    pending = bed.pod_manifest("node2", "never")
    pending["spec"]["containers"][0]["image"] = "docker.io/local/absent:1"  # never pulled: stays Pending
    bed.kubectl(node, "apply", "-f", "-", admin=True, stdin=json.dumps(pending))
    apply(bed, "node2", "never", name="never-net")
    wait_for(lambda: (get(bed, "node2", "never-net") or {}).get("status") == "WaitingForPod", timeout=120,
             what="WaitingForPod for a Pending pod")
    assert "Pending" in next(e["message"] for e in kubectl_json(bed, "node2", "get", "events", "-n",
                                                                node.namespace)["items"]
                             if e["involvedObject"]["name"] == "never-net")
    netns = bed.pod_netns("node2", "roamer")
    bed.delete_pod("node2", "roamer")
    wait_for(lambda: (get(bed, "node2", "roamer-net") or {}).get("status") == "WaitingForPod", timeout=120,
             what="WaitingForPod after the pod's deletion")
    assert not os.path.exists(f"/run/netns/{netns}")
