"""A pod's namespace from the runtime's answers, and which pod a dtService may attach.

The parsing (rules/runtime.py) is pure and tested here on the shapes crictl and /proc give;
the whole lookup, against a real containerd and real processes, is in
tests/integration/test_real_pods.py."""

from __future__ import annotations

import json

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.data.netns import Snapshot
from ansible_collections.sightline.dtservice.plugins.module_utils.data.podnet import (
    NamespaceMemory,
    PodLookupError,
    RuntimeView,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import pods
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.runtime import (
    cgroup_pod_uid,
    cri_network_paths,
    cri_sandboxes,
    local_addresses,
    pod_ips,
)

UID = "0b4c7f3e-9a1d-4c55-8f00-2f7d1e6a9b10"
OTHER = "11111111-2222-3333-4444-555555555555"


def sandbox(sandbox_id: str, uid: str, state: str = "SANDBOX_READY") -> dict:
    return {"id": sandbox_id, "state": state, "metadata": {"name": "p", "uid": uid, "namespace": "n", "attempt": 0},
            "labels": {"io.kubernetes.pod.uid": uid}}


def test_only_ready_sandboxes_count_and_each_is_found_by_its_pod_uid():
    listing = json.dumps({"items": [sandbox("a", UID), sandbox("b", UID, "SANDBOX_NOTREADY"), sandbox("c", OTHER)]})
    assert cri_sandboxes(listing) == {UID: ["a"], OTHER: ["c"]}
    assert cri_sandboxes("") == {}


def test_inspectp_of_several_sandboxes_gives_each_network_namespace():
    def status(sandbox_id: str, path: str) -> str:
        return json.dumps({"status": {"id": sandbox_id}, "info": {"runtimeSpec": {"linux": {"namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "network", "path": path}]}}}}, indent=2)

    text = status("a", "/var/run/netns/cni-1") + "\n" + status("c", "/var/run/netns/cni-2") + "\n"
    assert cri_network_paths(text) == {"a": "/var/run/netns/cni-1", "c": "/var/run/netns/cni-2"}
    # crictl 1.37 prints several sandboxes as one JSON array.
    array = "[" + status("a", "/var/run/netns/cni-1") + ", " + status("c", "/var/run/netns/cni-2") + "]"
    assert cri_network_paths(array) == {"a": "/var/run/netns/cni-1", "c": "/var/run/netns/cni-2"}
    # A sandbox on the host's network has no network namespace path: it is not listed.
    host = json.dumps({"status": {"id": "h"}, "info": {"runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}]}}}})
    assert cri_network_paths(host) == {}


@pytest.mark.parametrize("line, expected", [
    (f"4:memory:/dtfed-machine0/kubepods/besteffort/pod{UID}/9f3c", UID),
    (f"12:cpu,cpuacct:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
     "cri-containerd-9f3c.scope", UID),
    (f"0::/kubepods/pod{UID}", UID),
    ("4:memory:/process_api/ce3ce4e5a868b33dd5d107193c795156", None),
    ("4:memory:/user.slice/podman-1234.scope", None),
])
def test_a_process_cgroup_names_its_pod_under_either_cgroup_driver(line, expected):
    assert cgroup_pod_uid(f"9:name=systemd:/\n{line}\n") == expected


def test_addresses_of_a_namespace_and_of_a_pod():
    links = [{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},
             {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "198.19.1.5"},
                                              {"family": "inet6", "local": "fe80::1"}]}]
    assert local_addresses(links) == {"127.0.0.1", "198.19.1.5", "fe80::1"}
    assert pod_ips({"status": {"podIP": "198.19.1.5", "podIPs": [{"ip": "198.19.1.5"}, {"ip": "fd00::5"}]}}) == {
        "198.19.1.5", "fd00::5"}
    assert pod_ips({"status": {}}) == set()


def test_a_host_network_pod_is_refused_before_any_runtime_is_asked():
    view = RuntimeView(runtime_endpoint="unix:///nonexistent.sock", crictl="/nonexistent/crictl")
    with pytest.raises(PodLookupError) as refused:
        view.network_namespace({"metadata": {"uid": UID}, "spec": {"hostNetwork": True},
                                "status": {"podIP": "198.18.0.10"}})
    assert refused.value.refused


def test_an_unusable_runtime_is_reported_not_raised_past_the_fallback():
    view = RuntimeView(runtime_endpoint="unix:///nonexistent.sock", crictl="/nonexistent/crictl",
                       methods=("cri",))
    with pytest.raises(PodLookupError) as missing:
        view.network_namespace({"metadata": {"uid": UID}, "spec": {}, "status": {"podIP": "198.19.1.5"}})
    assert not missing.value.refused
    assert "could not be run" in str(missing.value)


def pod(name: str, *, phase: str = "Running", node: str = "node1", created: str = "2026-12-01T10:00:00Z",
        labels: dict | None = None, deleting: bool = False, host_network: bool = False) -> dict:
    meta = {"name": name, "uid": UID, "creationTimestamp": created, "labels": labels or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T11:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node, "hostNetwork": host_network},
            "status": {"phase": phase, "podIP": "198.19.1.5" if phase == "Running" else None}}


def test_a_pod_is_selected_by_name_first_then_by_its_app_label():
    named = pod("web")
    replica_old = pod("web-5d8f-abcde", labels={"app": "web"}, created="2026-12-01T09:00:00Z", deleting=True)
    replica_new = pod("web-5d8f-fghij", labels={"app": "web"}, created="2026-12-01T10:30:00Z")
    assert pods.select({"web": named, replica_new["metadata"]["name"]: replica_new}, "web") is named
    # A Deployment's replacement: the running one, not the one being deleted.
    chosen = pods.select({p["metadata"]["name"]: p for p in (replica_old, replica_new)}, "web")
    assert chosen is replica_new
    assert pods.select({"other": pod("other", labels={"app": "other"})}, "web") is None


@pytest.mark.parametrize("subject, status", [
    (None, "WaitingForPod"),
    (pod("p", phase="Pending"), "WaitingForPod"),
    (pod("p", deleting=True), "WaitingForPod"),
    (pod("p", phase="Failed"), "PodFailed"),
    (pod("p", phase="Succeeded"), "PodFailed"),
    (pod("p", node="node7"), "PodElsewhere"),
    (pod("p", host_network=True), "PodRefused"),
    (pod("p"), None),
])
def test_only_a_running_pod_on_a_served_node_is_attachable(subject, status):
    verdict = pods.judge(subject, selector="p", served_nodes=("node1",))
    assert (verdict[0] if verdict else None) == status
    if verdict:
        assert verdict[1]  # a message a user can act on


def test_a_pods_deletion_was_asked_its_grace_period_before_its_deletion_timestamp():
    deleting = {"metadata": {"name": "p", "deletionTimestamp": "2026-12-02T03:00:31Z",
                             "deletionGracePeriodSeconds": 30}}
    assert pods.deletion_asked(deleting) == 1796180401.0  # 2026-12-02T03:00:01Z
    assert pods.deletion_asked({"metadata": {"name": "p"}}) is None
    assert pods.deletion_asked(None) is None
    assert pods.deletion_asked({"metadata": {"name": "p", "deletionTimestamp": "soon"}}) is None


# ------------------------------------------------------------------ the machine's memory

ENDPOINT = "unix:///run/containerd/containerd.sock"


def holding(*addresses: str):
    """A namespace reader that finds ``addresses`` in any namespace it is asked about."""
    def read(_path: str) -> Snapshot:
        return Snapshot(links=[{"ifname": "eth0", "addr_info": [{"local": a} for a in addresses]}], forwarding={})
    return read


def running_pod(ip: str = "198.19.1.5") -> dict:
    return {"metadata": {"uid": UID}, "spec": {}, "status": {"podIP": ip}}


def remembered(tmp_path, namespace) -> NamespaceMemory:
    memory = NamespaceMemory(folder=str(tmp_path / "memory"))
    memory.learn(ENDPOINT, UID, str(namespace))
    memory.keep()
    return NamespaceMemory(folder=memory.folder)  # as the next pass reads it


def test_a_remembered_namespace_serves_the_lookup_without_asking_the_runtime(tmp_path):
    namespace = tmp_path / "cni-1"
    namespace.touch()
    # No crictl to run: a lookup that asked the runtime would fail.
    view = RuntimeView(runtime_endpoint=ENDPOINT, methods=("cri",), crictl="/nonexistent/crictl",
                       memory=remembered(tmp_path, namespace))
    assert view.memory.holds(ENDPOINT) and not view.memory.holds("unix:///other.sock")
    assert view.network_namespace(running_pod(), read=holding("198.19.1.5")) == str(namespace)


@pytest.mark.parametrize("change", ["another namespace at the path", "the pod's IP is not there", "gone"])
def test_a_remembered_namespace_that_is_not_the_pods_any_more_is_not_used(tmp_path, change):
    namespace = tmp_path / "cni-1"
    namespace.touch()
    memory = remembered(tmp_path, namespace)
    read = holding("198.19.1.5")
    if change == "another namespace at the path":
        namespace.rename(tmp_path / "old")  # still there: the new one cannot have its inode
        namespace.touch()
    elif change == "the pod's IP is not there":
        read = holding("198.19.9.9")
    else:
        namespace.unlink()
    view = RuntimeView(runtime_endpoint=ENDPOINT, methods=("cri",), crictl="/nonexistent/crictl", memory=memory)
    with pytest.raises(PodLookupError) as asked:
        view.network_namespace(running_pod(), read=read)
    assert "could not be run" in str(asked.value)  # it went to the runtime


def test_the_memory_keeps_pinned_namespaces_still_there_and_no_process_namespace(tmp_path):
    kept, gone = tmp_path / "cni-kept", tmp_path / "cni-gone"
    kept.touch()
    gone.touch()
    folder = tmp_path / "run" / "pod-namespaces"
    first = NamespaceMemory(folder=str(folder))
    first.learn(ENDPOINT, UID, str(gone))
    first.learn(ENDPOINT, OTHER, "/proc/1/ns/net")  # a PID is reused: never remembered
    first.learn("unix:///run/crio/crio.sock", OTHER, str(kept))
    first.keep()
    gone.unlink()
    second = NamespaceMemory(folder=str(folder))
    second.learn(ENDPOINT, OTHER, str(kept))
    second.keep()
    files = sorted(folder.iterdir())
    assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)  # one per runtime
    on_disk = [json.loads(f.read_text()) for f in files]
    assert {"endpoint": ENDPOINT, "pods": {OTHER: [str(kept), kept.stat().st_dev, kept.stat().st_ino]}} in on_disk
    third = NamespaceMemory(folder=str(folder))
    assert third.recall(ENDPOINT, OTHER) == str(kept) and third.recall(ENDPOINT, UID) is None
    assert third.recall("unix:///run/crio/crio.sock", OTHER) == str(kept)
    # A runtime none of whose namespaces is left loses its file at the next write of another.
    kept.unlink()
    fresh = tmp_path / "cni-fresh"
    fresh.touch()
    fourth = NamespaceMemory(folder=str(folder))
    fourth.learn(ENDPOINT, UID, str(fresh))
    fourth.keep()
    assert [json.loads(f.read_text())["endpoint"] for f in folder.iterdir()] == [ENDPOINT]
