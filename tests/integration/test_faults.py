"""The fault matrix on a live bed: a member cluster's API server gone, the provisioner's rights
in one namespace gone, a run SIGKILLed mid-way. Each
fault stays where it belongs (the rest of the federation is served, its pods still talk), is
retried with bounded log lines, and is over in bounded time once the fault is.

One bed of two clusters: node0 and node2 on cluster0, node1 on cluster1; the dtDomain's home is
node0. The SIGKILL case runs first, with playbook runs of the test's own and no daemon; deploy
then starts the daemon, which serves everything after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_playbook, start_playbook, write_inventory
from test_daemon_e2e import SEED_SERVER, connected, daemon_pid, get, wait_for
from test_dataplane_e2e import ping

pytestmark = pytest.mark.integration

HANDSHAKE_TIMEOUT = 5
MAX_BACKOFF = 20
# What the daemon waits at most before it tries a failing node or watch again.
WATCH_CAP = 30
# A pass of a few interfaces on this 2-core machine, with room for a loaded moment.
PASS = 60
# The least time a fault lasts, so that the backoff reaches its longer waits.
OUTAGE = 45
# Log lines one failing node may cause in an outage of OUTAGE seconds: three watches backing
# off to WATCH_CAP (a line per longer wait) and its runs backing off to MAX_BACKOFF.
BOUNDED_LINES = 60
# Most networks made during a fault are in a domain without the faulty member, so that each
# case shows one thing; the last case makes one in a domain that spans the dead cluster.
DOMAINS = [{"name": "mydomain", "members": ["node0", "node1", "node2"]},
           {"name": "cluster0", "members": ["node0", "node2"], "pool": "100.104.0.0/16"},
           {"name": "nonode2", "members": ["node0", "node1"], "pool": "100.108.0.0/16"}]
PODS = [("node0", "hub-pod"), ("node1", "c1-pod"), ("node2", "c2-pod")]
SHM = Path("/dev/shm")
KEY_DIR_PREFIX = "dtwg-"


def apply_all(bed, node: str, pod: str, names: list[str], *, domain: str = "mydomain") -> None:
    """dtServices of these names on the node's pod, in one ``kubectl apply`` (one burst for the daemon)."""
    documents = "---\n".join(SEED_SERVER.format(pod=pod).replace("name: myservice", f"name: {name}")
                             .replace("mydomain", domain) for name in names)
    bed.kubectl(bed.node(node), "apply", "-n", bed.node(node).namespace, "-f", "-", admin=True, stdin=documents)


def objects_in(stream: str) -> list[dict]:
    """The JSON objects of ``kubectl get --watch -o json``'s output, one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(stream) and stream[at].isspace():
            at += 1
        if at == len(stream):
            return found
        obj, at = decoder.raw_decode(stream, at)
        found.append(obj)


def status(bed, node: str, name: str) -> str | None:
    return (get(bed, node, name) or {}).get("status")


def hub_address(bed, name: str) -> str:
    return next(a for a, e in get(bed, "node0", name)["peers"].items() if "server" in e["labels"].values())


class DaemonLog:
    """The daemon's JSON log lines written since the mark."""

    def __init__(self, bed) -> None:
        self.path = bed.dir / "reconciler" / "reconciler.log"
        self.offset = self.path.stat().st_size

    def lines(self) -> list[dict]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        found = []
        for line in text.splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def about(self, node: str) -> list[dict]:
        """Warnings and errors of the node: its watches failing, its runs failing."""
        return [e for e in self.lines() if e.get("node") == node and e.get("level") in ("warning", "error")]


def marked(pid: int, mark: str) -> bool:
    """The process's environment carries the run mark (a zombie's is empty)."""
    try:
        return f"DTSERVICE_RUN_ID={mark}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def marked_processes(mark: str) -> dict[int, str]:
    """The live processes of a run (pid -> command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and marked(int(entry.name), mark):
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
    return found


def ansible_processes(mark: str) -> dict[int, str]:
    """A run's processes but the wireguard-go daemons of the interfaces it made, which outlive
    every run by design (and inherit its environment)."""
    return {pid: cmd for pid, cmd in marked_processes(mark).items() if not cmd.startswith("wireguard-go ")}


def key_dirs() -> dict[Path, int]:
    """The agent's key directories in /dev/shm and the process each is named after."""
    found = {}
    for entry in SHM.iterdir():
        pid = entry.name[len(KEY_DIR_PREFIX):].partition("-")[0]
        if entry.name.startswith(KEY_DIR_PREFIX) and pid.isdigit():
            found[entry] = int(pid)
    return found


def orphaned_key_dirs() -> list[Path]:
    return [path for path, pid in key_dirs().items() if not Path(f"/proc/{pid}").exists()]


def with_vars(path: str, **variables) -> str:
    """The inventory at ``path`` with these group variables added."""
    inventory = json.loads(Path(path).read_text())
    inventory["federation"]["vars"].update(variables)
    Path(path).write_text(json.dumps(inventory))
    return path


@pytest.fixture(scope="module")
def faulty(bed_factory, tmp_path_factory):
    bed = bed_factory(nodes=3, clusters=2)
    for node, pod in PODS:
        bed.create_pod(node, pod)
    directory = tmp_path_factory.mktemp("inv")
    settings = {"dtservice_pass_handshake_timeout": HANDSHAKE_TIMEOUT,
                "dtservice_daemon_max_backoff_seconds": MAX_BACKOFF}
    plain = with_vars(write_inventory(bed, directory / "plain.json", services={}, domains=DOMAINS), **settings)
    daemon = with_vars(write_inventory(bed, directory / "daemon.json", services={}, domains=DOMAINS, daemon=True),
                       **settings)
    run_playbook(bed, "playbooks/deploy.yml", inventory=plain)
    return {"bed": bed, "plain": plain, "daemon": daemon}


def test_a_run_sigkilled_mid_run_leaves_no_key_file_or_worker_and_the_next_run_converges(faulty):
    bed = faulty["bed"]
    names = [f"kill{index}" for index in range(6)]
    # The hubs first, in a run of their own: the killed run then adds the clients to their
    # interfaces (`wg addconf`, from a key file). A new interface gets its key over
    # wireguard-go's control socket, with no file to catch the run by.
    apply_all(bed, "node0", "hub-pod", names)
    run_playbook(bed, "playbooks/reconcile.yml", inventory=faulty["plain"])
    apply_all(bed, "node2", "c2-pod", names)
    mark = f"faults-{os.getpid()}-killed"
    playbook = start_playbook(bed, "playbooks/reconcile.yml", inventory=faulty["plain"],
                              env={"DTSERVICE_RUN_ID": mark}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    # Caught while a worker of the run holds a key file, i.e. while it changes a hub's
    # interface: the worker is frozen, so its directory is surely there when it is killed.
    holder = None
    deadline = time.monotonic() + 120
    while holder is None and playbook.poll() is None and time.monotonic() < deadline:
        for path, pid in key_dirs().items():
            if not marked(pid, mark):
                continue
            os.kill(pid, signal.SIGSTOP)
            if path.exists():
                holder = pid
                break
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.002)
    assert holder is not None, "the run configured no interface to be killed in"
    # The playbook's process group goes, and the worker with it (an OOM kill, a machine's
    # kill -9): Ansible's other workers run in sessions of their own and are orphaned.
    os.killpg(playbook.pid, signal.SIGKILL)
    os.kill(holder, signal.SIGKILL)
    playbook.wait()
    wait_for(lambda: not Path(f"/proc/{holder}").exists(), timeout=10, what="the killed worker to go")
    assert orphaned_key_dirs(), "the killed worker left its key directory"
    assert not all(status(bed, node, name) == "Connected" for node in ("node0", "node2") for name in names)

    started = time.monotonic()
    run_playbook(bed, "playbooks/reconcile.yml", inventory=faulty["plain"])
    took = time.monotonic() - started
    assert orphaned_key_dirs() == [], "the next run swept the key directories of dead processes"
    assert ansible_processes(mark) == {}, "no Ansible process of the killed run is left"
    for name in names:
        assert status(bed, "node0", name) == "Connected", name
        assert status(bed, "node2", name) == "Connected", name
    assert ping(bed, "node2", "c2-pod", hub_address(bed, "kill0")) == 3
    assert took < PASS + 6 * HANDSHAKE_TIMEOUT


def test_a_joiner_whose_hub_does_not_answer_shows_pending_while_it_waits(faulty):
    """The pass's reconcile leaves a new client's Pending to the pass's agent, which writes
    Connected straight away when the first handshake comes at once: one that has waited a
    second shows Pending, and ServerUnreachable once the handshake wait is over. Here node2
    drops what the hub's port sends it."""
    bed = faulty["bed"]
    hub = bed.node("node0")
    # Every version of the hub's object, from before it exists: a hub waits for no handshake,
    # so its first status is its last.
    watch = subprocess.Popen(["kubectl", "--kubeconfig", hub.admin_kubeconfig, "get", "dtservices", "-n",
                              hub.namespace, "--watch", "-o", "json"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the watch is open before the object is made
        apply_all(bed, "node0", "hub-pod", ["quiet"])
        run_playbook(bed, "playbooks/reconcile.yml", inventory=faulty["plain"])
        time.sleep(1.0)  # the last event reaches the watch
    finally:
        watch.terminate()
    versions = objects_in(watch.communicate(timeout=30)[0])
    hub_statuses = [obj.get("status") for obj in versions if obj["metadata"]["name"] == "quiet"]
    assert hub_statuses and hub_statuses[-1] == "Connected" and "Pending" not in hub_statuses, hub_statuses
    domain = json.loads(bed.kubectl(bed.node("node0"), "get", "dtdomain", "mydomain", "-n",
                                    bed.node("node0").namespace, "-o", "json", admin=True).stdout)
    host, port = domain["status"]["networks"]["quiet"]["endpoint"].rsplit(":", 1)
    drop = ["INPUT", "-p", "udp", "-s", host, "--sport", port, "-j", "DROP"]
    node_netns = bed.node("node2").netns
    subprocess.run(["ip", "netns", "exec", node_netns, "iptables", "-I", *drop], check=True)
    seen: list[str | None] = []
    try:
        apply_all(bed, "node2", "c2-pod", ["quiet"])
        playbook = start_playbook(bed, "playbooks/reconcile.yml", inventory=faulty["plain"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while playbook.poll() is None:
            now = status(bed, "node2", "quiet")
            if not seen or seen[-1] != now:
                seen.append(now)
            time.sleep(0.1)
        seen.append(status(bed, "node2", "quiet"))
    finally:
        subprocess.run(["ip", "netns", "exec", node_netns, "iptables", "-D", *drop], check=True)
    assert "Pending" in seen and seen[-1] == "ServerUnreachable", seen
    assert seen.index("Pending") < seen.index("ServerUnreachable"), seen
    run_playbook(bed, "playbooks/reconcile.yml", inventory=faulty["plain"])
    assert status(bed, "node2", "quiet") == "Connected"


@pytest.fixture(scope="module")
def served(faulty):
    """The daemon deployed; a network ``base`` served by hub-pod on node0 with a client on each other node."""
    bed = faulty["bed"]
    run_playbook(bed, "playbooks/deploy.yml", inventory=faulty["daemon"])
    assert Path(f"/proc/{daemon_pid(bed)}").exists()
    apply_all(bed, "node0", "hub-pod", ["base"])
    wait_for(lambda: connected(bed, "node0", "base"), timeout=PASS, what="the base hub Connected")
    apply_all(bed, "node1", "c1-pod", ["base"])
    apply_all(bed, "node2", "c2-pod", ["base"])
    for node in ("node1", "node2"):
        wait_for(lambda node=node: connected(bed, node, "base"), timeout=2 * PASS, what=f"base on {node}")
    return bed


def test_a_member_clusters_api_server_down_stops_only_its_nodes(served):
    bed = served
    log = DaemonLog(bed)
    # node1's pod is found through its API server: before it goes.
    node1_pod = bed.pod_netns("node1", "c1-pod")
    base_hub = hub_address(bed, "base")
    bed.stop_apiserver(1)
    stopped = time.monotonic()
    try:
        apply_all(bed, "node0", "hub-pod", ["whiledown"], domain="cluster0")
        wait_for(lambda: connected(bed, "node0", "whiledown"), timeout=2 * PASS, what="the whiledown hub")
        apply_all(bed, "node2", "c2-pod", ["whiledown"], domain="cluster0")
        wait_for(lambda: connected(bed, "node2", "whiledown"), timeout=2 * PASS,
                 what="whiledown on node2 while cluster1 is down")
        assert ping(bed, "node2", "c2-pod", hub_address(bed, "whiledown")) == 3
        # The data plane of a network spanning both clusters is not the API's: it carries on.
        assert ping(bed, "node2", "c2-pod", hub_address(bed, "base")) == 3
        answered = subprocess.run(["ip", "netns", "exec", node1_pod, "ping", "-n", "-q", "-c", "3", "-i", "0.2",
                                   "-W", "1", base_hub], capture_output=True, text=True, check=False)
        assert answered.returncode == 0, answered.stdout
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
        lines = log.about("node1")
        assert lines, "the daemon says that node1 fails"
        assert len(lines) <= BOUNDED_LINES, f"{len(lines)} lines for node1 in {OUTAGE}s"
        print(f"\n{len(lines)} warning lines for node1 in {time.monotonic() - stopped:.0f}s of its API server down")
    finally:
        bed.start_apiserver(1)
    restarted = time.monotonic()
    apply_all(bed, "node1", "c1-pod", ["afterup"])
    wait_for(lambda: connected(bed, "node1", "afterup"), timeout=WATCH_CAP + MAX_BACKOFF + PASS,
             what="node1 served once its API server is back")
    assert time.monotonic() - restarted < WATCH_CAP + MAX_BACKOFF + PASS
    for node in ("node0", "node1", "node2"):
        wait_for(lambda node=node: connected(bed, node, "base"), timeout=PASS, what=f"base on {node}")
    assert ping(bed, "node1", "c1-pod", hub_address(bed, "base")) == 3


def test_a_namespace_whose_role_binding_is_deleted_backs_off_and_the_others_are_served(served):
    bed = served
    node2 = bed.node("node2")
    binding = json.loads(bed.kubectl(node2, "get", "rolebinding", "dtservice-provisioner", "-n", node2.namespace,
                                     "-o", "json", admin=True).stdout)
    log = DaemonLog(bed)
    bed.kubectl(node2, "delete", "rolebinding", "dtservice-provisioner", "-n", node2.namespace, admin=True)
    deleted = time.monotonic()
    try:
        # Made while the provisioner cannot see node2's namespace: served once it can again.
        apply_all(bed, "node2", "c2-pod", ["norights"])
        apply_all(bed, "node0", "hub-pod", ["elsewhere"], domain="nonode2")
        wait_for(lambda: connected(bed, "node0", "elsewhere"), timeout=2 * PASS, what="the elsewhere hub")
        apply_all(bed, "node1", "c1-pod", ["elsewhere"], domain="nonode2")
        wait_for(lambda: connected(bed, "node1", "elsewhere"), timeout=2 * PASS,
                 what="elsewhere on node1 while node2 has no rights")
        assert ping(bed, "node1", "c1-pod", hub_address(bed, "elsewhere")) == 3
        assert ping(bed, "node2", "c2-pod", hub_address(bed, "base")) == 3
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - deleted)))
        lines = log.about("node2")
        # Its open watches go on (a stream is authorized when it starts); its runs are refused.
        assert any("403" in json.dumps(e) for e in lines), "node2's runs are refused"
        assert len(lines) <= BOUNDED_LINES, f"{len(lines)} lines for node2 in {OUTAGE}s"
        print(f"\n{len(lines)} warning lines for node2 in {time.monotonic() - deleted:.0f}s without its binding")
        assert status(bed, "node2", "norights") is None, "nothing could write onto it"
    finally:
        for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            binding["metadata"].pop(field, None)
        bed.kubectl(node2, "apply", "-f", "-", admin=True, stdin=json.dumps(binding))
    restored = time.monotonic()
    wait_for(lambda: connected(bed, "node2", "norights"), timeout=WATCH_CAP + MAX_BACKOFF + PASS,
             what="node2 served once its binding is back")
    assert time.monotonic() - restored < WATCH_CAP + MAX_BACKOFF + PASS
    assert ping(bed, "node2", "c2-pod", hub_address(bed, "base")) == 3


def test_a_new_network_of_a_domain_spanning_a_dead_cluster_is_served_on_the_healthy_one(served):
    """A hub's pass reads its network's dtService on every member of the domain; a member that
    does not answer keeps its clients' addresses and the hub is served (control/claims.py)."""
    bed = served
    bed.stop_apiserver(1)
    try:
        apply_all(bed, "node0", "hub-pod", ["samedomain"])
        wait_for(lambda: connected(bed, "node0", "samedomain"), timeout=PASS,
                 what="a hub of mydomain on cluster0 while cluster1 is down")
    finally:
        bed.start_apiserver(1)
