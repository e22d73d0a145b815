"""The local federation is real: a real API server, real kubelets running real pods, real UDP."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.integration

CRD_DIR = ROOT / "roles/dtservice_cluster/files"


def test_crd_schema_rejects_a_malformed_dtservice_with_422(bed):
    node = bed.node("node0")
    bed.kubectl(node, "apply", "-f", str(CRD_DIR), admin=True)
    bed.kubectl(node, "wait", "--for", "condition=established", "crd/dtservices.sid.sightlineinnovation.com",
                admin=True)
    malformed = {"apiVersion": "sid.sightlineinnovation.com/v1", "kind": "dtService",
                 "metadata": {"name": "bad", "namespace": node.namespace},
                 "spec": {"domainSelector": "Not_A_Name", "podSelector": 7}}
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=node.admin_kubeconfig))
    with pytest.raises(ApiException) as rejected:
        api.create_namespaced_custom_object("sid.sightlineinnovation.com", "v1", node.namespace, "dtservices",
                                            malformed)
    assert rejected.value.status == 422
    body = json.loads(rejected.value.body)
    assert body["reason"] == "Invalid"
    fields = {cause["field"] for cause in body["details"]["causes"]}
    assert {"spec.domainSelector", "spec.podSelector"} <= fields


def test_namespace_deletion_completes(bed):
    node = bed.node("node0")
    bed.kubectl(node, "create", "namespace", "dtfed-doomed", admin=True)
    bed.kubectl(node, "create", "configmap", "x", "-n", "dtfed-doomed", admin=True)
    bed.kubectl(node, "delete", "namespace", "dtfed-doomed", "--wait=true", "--timeout=60s", admin=True)
    gone = bed.kubectl(node, "get", "namespace", "dtfed-doomed", admin=True, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_owned_objects_are_garbage_collected(bed):
    node = bed.node("node1")
    owner = json.loads(bed.kubectl(node, "create", "configmap", "owner", "-n", node.namespace, "-o", "json",
                                   admin=True).stdout)
    owned = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "owned", "namespace": node.namespace,
                          "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                               "uid": owner["metadata"]["uid"]}]}}
    bed.kubectl(node, "apply", "-f", "-", admin=True, stdin=json.dumps(owned))
    bed.kubectl(node, "delete", "configmap", "owner", "-n", node.namespace, admin=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if bed.kubectl(node, "get", "configmap", "owned", "-n", node.namespace, admin=True, check=False).returncode:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the garbage collector did not delete the owned ConfigMap")


def test_kubelets_are_ready_nodes_at_their_node_addresses(bed):
    nodes = json.loads(bed.kubectl(bed.node("node0"), "get", "nodes", "-o", "json", admin=True).stdout)["items"]
    ready = {n["metadata"]["name"]: ({a["type"]: a["address"] for a in n["status"]["addresses"]},
                                     {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"])
             for n in nodes}
    assert {name: (addresses["InternalIP"], state) for name, (addresses, state) in ready.items()} == {
        n.name: (n.address, "True") for n in bed.nodes}


def test_a_pod_applied_with_kubectl_runs_under_kubelet_with_a_cni_address_and_deletes_cleanly(bed):
    node = bed.node("node2")
    netns = bed.create_pod("node2", "probe")
    pod = json.loads(bed.kubectl(node, "get", "pod", "probe", "-n", node.namespace, "-o", "json", admin=True).stdout)
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["nodeName"] == "node2"
    assert pod["status"]["hostIP"] == node.address
    assert not any(k.startswith("dtservice") for k in pod["metadata"].get("annotations", {}))
    assert netns.startswith("cni-") and Path("/run/netns", netns).exists()
    addresses = subprocess.run(["ip", "-n", netns, "-j", "addr"], capture_output=True, text=True, check=True).stdout
    assert pod["status"]["podIP"] in addresses and pod["status"]["podIP"].startswith("198.19.3.")
    # What users do with a pod works: exec through the API server and kubelet.
    shown = bed.kubectl(node, "exec", "-n", node.namespace, "probe", "--", "ip", "-4", "addr", "show", "eth0",
                        admin=True)
    assert pod["status"]["podIP"] in shown.stdout
    bed.delete_pod("node2", "probe")
    assert not Path("/run/netns", netns).exists(), "kubelet and CNI take the sandbox's namespace down"
    gone = bed.kubectl(node, "get", "pod", "probe", "-n", node.namespace, admin=True, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_a_machines_containerd_started_anew_keeps_its_pods_and_takes_an_image(bed):
    """What the bed does when containerd refuses an import (``Testbed.import_image``): the
    machine's containerd is started again; its pods keep running, and images import."""
    node = bed.node("node1")
    netns = bed.create_pod("node1", "survivor")
    machine = next(m for m in bed.machines if m.node_name == "node1")
    sandboxes = bed.crictl(machine.runtime_endpoint, "pods", "-q", "--state", "ready").stdout.split()
    bed.restart_containerd(machine)
    deadline = time.monotonic() + 30
    while bed.crictl(machine.runtime_endpoint, "pods", "-q", "--state", "ready", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the runtime did not answer again"
        time.sleep(0.2)
    assert bed.crictl(machine.runtime_endpoint, "pods", "-q", "--state", "ready").stdout.split() == sandboxes
    assert Path("/run/netns", netns).exists()
    bed.import_image("docker.io/local/restarted:1", {"/bin/restarted": Path("/bin/true")})
    images = subprocess.run(["ctr", "-a", machine.socket, "-n", "k8s.io", "images", "ls", "-q"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert "docker.io/local/restarted:1" in images
    pod = json.loads(bed.kubectl(node, "get", "pod", "survivor", "-n", node.namespace, "-o", "json",
                                 admin=True).stdout)
    assert pod["status"]["phase"] == "Running"
    bed.delete_pod("node1", "survivor")


def test_nodes_exchange_udp_on_the_underlay(bed):
    sender, receiver = bed.node("node0"), bed.node("node1")
    listener = subprocess.Popen(
        ["ip", "netns", "exec", receiver.netns, "python3", "-c",
         "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         f"s.bind(('{receiver.address}', 40000)); s.settimeout(10); "
         "data, peer = s.recvfrom(100); print(data.decode(), peer[0])"],
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        subprocess.run(["ip", "netns", "exec", sender.netns, "python3", "-c",
                        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                        f"s.sendto(b'hello-underlay', ('{receiver.address}', 40000))"], check=True)
        out, _stderr = listener.communicate(timeout=15)
    finally:
        listener.kill()
    assert out.split() == ["hello-underlay", sender.address]


def test_second_cluster_and_stop_leaves_nothing_behind(bed_factory):
    bed = bed_factory(nodes=2, clusters=2)
    servers = {bed.node(n).kubeconfig for n in ("node0", "node1")}
    assert len(servers) == 2, "nodes of a two-cluster bed talk to two API servers"
    assert len(bed.status()["clusters"]) == 2
    pod_netns = bed.create_pod("node1", "probe")
    recorded = [p["pid"] for p in bed.state["pids"]]
    # Per cluster etcd, kube-apiserver, kube-controller-manager; per machine containerd, sshd, kubelet.
    assert bed.status()["processes_alive"] == len(recorded) == 2 * 3 + 2 * 3
    cgroups = [machine.cgroup for machine in bed.machines]
    bed.stop()
    for pid in recorded:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    # This bed's own prefix: another bed (a user's scripts/deploy-local) may be up beside it.
    leftover_netns = [n for n in netns if n.startswith(bed.prefix) or n == pod_netns]
    assert leftover_netns == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"{bed.prefix}ul" not in links
    mounts = Path("/proc/self/mounts").read_text()
    assert str(bed.dir) not in mounts
    assert not any(Path("/sys/fs/cgroup/memory", c.lstrip("/")).exists() for c in cgroups)
    assert not bed.dir.exists()
