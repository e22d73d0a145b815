"""The local federation: a real Kubernetes control plane and network namespaces on one machine.

Owns everything the test bed starts and makes, and takes all of it down again:

- per cluster: a CA and client certificates, etcd, kube-apiserver and kube-controller-manager
  on loopback (binaries from scripts/build-controlplane.sh), an admin and a provisioner
  kubeconfig;
- per federation node: a Kubernetes namespace ``dtaas-nodeN-dtaas`` and a network namespace
  ``<prefix>nodeN`` whose ``eth0`` holds the node's underlay address (198.18.0.0/16) on a
  bridge in the underlay namespace ``<prefix>underlay`` (prefix ``dtfed-`` by default);
- per pod: a network namespace, a Pod object bound to its node and marked Running through
  ``pods/status``. The netns path is in the pod annotation ``NETNS_ANNOTATION``.

Every resource is written to ``state.json`` before it is made, so ``stop`` cleans up after a
crash too. Run as root; ``scripts/testbed --help`` lists the commands.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NETNS_ANNOTATION = "dtservice.sightlineinnovation.com/netns"
# Every network namespace of a bed starts with its prefix (DTSERVICE_TESTBED_PREFIX), so
# several beds can run side by side and stop removes exactly its own.
DEFAULT_PREFIX = "dtfed-"
UNDERLAY_BRIDGE = "dtbr0"
UNDERLAY_NETWORK = ipaddress.ip_network("198.18.0.0/16")
POD_NETWORK = ipaddress.ip_network("198.19.0.0/16")
PROVISIONER_USER = "dtservice-provisioner"
DEFAULT_DIR = "/tmp/dtservice-testbed"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# Enough of a controller manager for namespaces and owned objects to really go away.
KUBE_CONTROLLERS = ("namespace-controller", "garbage-collector-controller", "serviceaccount-controller",
                    "serviceaccount-token-controller")


def log(message: str) -> None:
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


def run(*argv: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=capture)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_namespace(index: int) -> str:
    return f"dtaas-node{index}-dtaas"


def node_address(index: int) -> str:
    return str(UNDERLAY_NETWORK.network_address + 10 + index)


@dataclass(frozen=True)
class Node:
    """One federation node of the bed, as the inventory and the tests see it."""

    index: int
    cluster: int
    name: str
    namespace: str
    netns: str
    address: str
    kubeconfig: str
    admin_kubeconfig: str


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
WIREGUARD_GO_INTERFACES = 4096


def allow_many_wireguard_go() -> None:
    """Each wireguard-go interface holds an inotify instance; the kernel's default of 128
    per user would stop a benchmark's beds (a hundred nodes, plus joiners) part way."""
    if int(INOTIFY_INSTANCES.read_text()) < WIREGUARD_GO_INTERFACES:
        INOTIFY_INSTANCES.write_text(str(WIREGUARD_GO_INTERFACES))
        log(f"fs.inotify.max_user_instances raised to {WIREGUARD_GO_INTERFACES} for wireguard-go")


class Testbed:
    """A local federation rooted in one state directory."""

    def __init__(self, directory: str | os.PathLike | None = None, *, prefix: str | None = None) -> None:
        self.dir = Path(directory or os.environ.get("DTSERVICE_TESTBED_DIR") or DEFAULT_DIR)
        self.state_file = self.dir / "state.json"
        self.state = self._load()
        self.prefix = self.state.get("prefix") or prefix or os.environ.get("DTSERVICE_TESTBED_PREFIX") \
            or DEFAULT_PREFIX

    @property
    def underlay_netns(self) -> str:
        return f"{self.prefix}underlay"

    # -- state ----------------------------------------------------------------------------
    def _load(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {"clusters": [], "nodes": [], "netns": [], "pids": [], "pods": {}}

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_file)

    @property
    def nodes(self) -> list[Node]:
        return [Node(**node) for node in self.state["nodes"]]

    def node(self, name: str) -> Node:
        for candidate in self.nodes:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no node {name!r} in the test bed (nodes: {[n.name for n in self.nodes]})")

    # -- start ----------------------------------------------------------------------------
    def start(self, *, nodes: int = 3, clusters: int = 1) -> None:
        if self.state["clusters"]:
            raise SystemExit(f"a test bed is already recorded in {self.state_file}; run stop first")
        if os.geteuid() != 0:
            raise SystemExit("the test bed makes network namespaces: run it as root")
        bin_dir = Path(os.environ.get("DTSERVICE_CONTROLPLANE_BIN", ""))
        if not (bin_dir / "kube-apiserver").exists():
            raise SystemExit("DTSERVICE_CONTROLPLANE_BIN is not set to the built control plane: "
                             "run scripts/setup.sh and source .dtservice.env")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state["prefix"] = self.prefix
        self._save()
        allow_many_wireguard_go()
        try:
            for index in range(clusters):
                self._start_cluster(index, bin_dir)
            self._make_underlay()
            for index in range(nodes):
                self._add_node(index, index % clusters)
            self._write_inventory()
        except BaseException:
            log("start failed; cleaning up what was made")
            self.stop()
            raise
        log(f"federation up: {nodes} node(s) in {clusters} cluster(s); state in {self.dir}")

    def _start_cluster(self, index: int, bin_dir: Path) -> None:
        from pki import write_cluster_pki  # local module: certificates only

        cluster_dir = self.dir / f"cluster{index}"
        cluster_dir.mkdir(parents=True, exist_ok=True)
        pki = write_cluster_pki(cluster_dir / "pki", users={
            "admin": ["system:masters"],
            PROVISIONER_USER: [],
            "system:kube-controller-manager": [],
        })
        ports = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port()}
        cluster = {"index": index, "dir": str(cluster_dir), "ports": ports,
                   "server": f"https://127.0.0.1:{ports['apiserver']}"}
        self.state["clusters"].append(cluster)
        self._save()

        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        log(f"cluster{index}: starting etcd on {etcd_url}")
        self._spawn(cluster_dir / "etcd.log", str(bin_dir / "etcd"),
                    "--name", f"cluster{index}", "--data-dir", str(cluster_dir / "etcd"),
                    "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                    "--listen-peer-urls", f"http://127.0.0.1:{ports['etcd_peer']}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['etcd_peer']}",
                    "--initial-cluster", f"cluster{index}=http://127.0.0.1:{ports['etcd_peer']}",
                    "--unsafe-no-fsync", "--log-level", "warn")
        wait_for(f"{etcd_url}/health", what=f"cluster{index} etcd")

        log(f"cluster{index}: starting kube-apiserver on {cluster['server']}")
        self._spawn(cluster_dir / "kube-apiserver.log", str(bin_dir / "kube-apiserver"),
                    "--etcd-servers", etcd_url,
                    "--bind-address", "127.0.0.1", "--secure-port", str(ports["apiserver"]),
                    "--cert-dir", str(cluster_dir / "pki"),
                    "--tls-cert-file", pki["serving_cert"], "--tls-private-key-file", pki["serving_key"],
                    "--client-ca-file", pki["ca_cert"],
                    "--authorization-mode", "RBAC",
                    "--service-cluster-ip-range", "10.0.0.0/24",
                    "--service-account-issuer", f"https://127.0.0.1:{ports['apiserver']}",
                    "--service-account-key-file", pki["sa_public"],
                    "--service-account-signing-key-file", pki["sa_private"],
                    "--allow-privileged=true",
                    "--disable-admission-plugins", "ServiceAccount",
                    "--enable-priority-and-fairness=false",
                    "--v", "1")
        for user in ("admin", PROVISIONER_USER, "system:kube-controller-manager"):
            write_kubeconfig(cluster_dir / f"{user.replace(':', '-')}.kubeconfig",
                             server=cluster["server"], ca=pki["ca_cert"],
                             cert=pki["users"][user]["cert"], key=pki["users"][user]["key"], user=user)
        wait_for(f"{cluster['server']}/readyz", what=f"cluster{index} kube-apiserver",
                 ca=pki["ca_cert"], cert=(pki["users"]["admin"]["cert"], pki["users"]["admin"]["key"]))

        log(f"cluster{index}: starting kube-controller-manager")
        self._spawn(cluster_dir / "kube-controller-manager.log", str(bin_dir / "kube-controller-manager"),
                    "--kubeconfig", str(cluster_dir / "system-kube-controller-manager.kubeconfig"),
                    "--controllers", ",".join(KUBE_CONTROLLERS),
                    "--service-account-private-key-file", pki["sa_private"],
                    "--root-ca-file", pki["ca_cert"],
                    "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
                    "--use-service-account-credentials=true",
                    "--v", "1")

    def _spawn(self, log_path: Path, *argv: str) -> None:
        with open(log_path, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.state["pids"].append({"pid": process.pid, "exe": argv[0], "argv": list(argv), "log": str(log_path)})
        self._save()

    def restart_apiserver(self, cluster: int = 0) -> None:
        """Stop a cluster's kube-apiserver and start it again with the same flags (etcd keeps the data)."""
        cluster_dir = self.state["clusters"][cluster]["dir"]
        record = next(p for p in self.state["pids"]
                      if p["exe"].endswith("/kube-apiserver") and p["log"].startswith(cluster_dir))
        os.killpg(record["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 30
        while process_alive(record["pid"], record["exe"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.state["pids"].remove(record)
        self._spawn(Path(record["log"]), *record["argv"])
        pki = Path(cluster_dir) / "pki"
        wait_for(f"{self.state['clusters'][cluster]['server']}/readyz", what=f"cluster{cluster} kube-apiserver",
                 ca=str(pki / "ca.crt"), cert=(str(pki / "admin.crt"), str(pki / "admin.key")))

    def _remember_netns(self, name: str) -> None:
        self.state["netns"].append(name)
        self._save()

    def _make_underlay(self) -> None:
        self._remember_netns(self.underlay_netns)
        run("ip", "netns", "add", self.underlay_netns)
        run("ip", "-n", self.underlay_netns, "link", "add", UNDERLAY_BRIDGE, "type", "bridge")
        run("ip", "-n", self.underlay_netns, "link", "set", UNDERLAY_BRIDGE, "up")
        run("ip", "-n", self.underlay_netns, "link", "set", "lo", "up")

    def _add_node(self, index: int, cluster_index: int) -> None:
        cluster = self.state["clusters"][cluster_index]
        netns = f"{self.prefix}node{index}"
        node = Node(index=index, cluster=cluster_index, name=f"node{index}",
                    namespace=node_namespace(index), netns=netns, address=node_address(index),
                    kubeconfig=str(Path(cluster["dir"]) / f"{PROVISIONER_USER}.kubeconfig"),
                    admin_kubeconfig=str(Path(cluster["dir"]) / "admin.kubeconfig"))
        self._remember_netns(netns)
        run("ip", "netns", "add", netns)
        # The veth is made in the node namespace so that deleting the namespace removes it.
        peer = f"dtul{index}"
        run("ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", peer,
            "netns", self.underlay_netns)
        run("ip", "-n", self.underlay_netns, "link", "set", peer, "master", UNDERLAY_BRIDGE, "up")
        run("ip", "-n", netns, "addr", "add", f"{node.address}/{UNDERLAY_NETWORK.prefixlen}", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        self.state["nodes"].append(node.__dict__)
        self._save()
        self.kubectl(node, "create", "namespace", node.namespace, admin=True)

    def _write_inventory(self) -> None:
        """An inventory of this bed (the static inventories/local matches the default 3 nodes)."""
        hosts = {node.name: {"dtservice_node_namespace": node.namespace,
                             "dtservice_node_kubeconfig": node.kubeconfig,
                             "dtservice_node_address": node.address,
                             "dtservice_node_netns": node.netns} for node in self.nodes}
        inventory = {"all": {"children": {"federation": {"hosts": hosts}}}}
        (self.dir / "inventory.json").write_text(json.dumps(inventory, indent=2))

    def write_inventory(self, path: str | os.PathLike, *, services: dict[str, list[dict]],
                        domains: list[dict] | None = None, daemon: bool = False) -> str:
        """An inventory of the bed's nodes (like inventories/local) with these declarations;
        the reconciler daemon is left out unless asked for."""
        hosts = {}
        for node in self.nodes:
            admin = str(Path(node.admin_kubeconfig))
            hosts[node.name] = {"dtservice_node_namespace": node.namespace, "dtservice_node_address": node.address,
                                "dtservice_node_netns": node.netns, "dtservice_node_kubeconfig": node.kubeconfig,
                                "dtservice_crds_kubeconfig": admin,
                                "dtservice_services": services.get(node.name, [])}
        inventory = {"federation": {"hosts": hosts, "vars": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "dtservice_daemon_enabled": daemon, "dtservice_daemon_dir": str(self.dir / "reconciler"),
            "dtservice_daemon_env": {"DTSERVICE_TESTBED_DIR": str(self.dir), "DTSERVICE_TESTBED_PREFIX": self.prefix},
            "dtservice_daemon_metrics_port": 0,
            "dtservice_domains": domains or [{"name": "mydomain", "members": [n.name for n in self.nodes]}]}}}
        Path(path).write_text(json.dumps(inventory))
        return str(path)

    # -- kubectl --------------------------------------------------------------------------
    def kubectl(self, node: Node, *args: str, admin: bool = False, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        kubeconfig = node.admin_kubeconfig if admin else node.kubeconfig
        return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], input=stdin,
                              text=True, capture_output=True, check=check)

    # -- pods -----------------------------------------------------------------------------
    def create_pod(self, node_name: str, pod: str, *, labels: dict[str, str] | None = None) -> str:
        """Make a pod's network namespace on a node and its Running Pod object; returns the netns path."""
        node = self.node(node_name)
        generation = self.state["pods"].get(f"{node.name}/{pod}", {}).get("generation", -1) + 1
        netns = f"{self.prefix}{node.name}-{pod}-{generation}"
        pod_index = sum(1 for key in self.state["pods"] if key.startswith(f"{node.name}/")) + 2
        pod_ip = str(POD_NETWORK.network_address + node.index * 256 + pod_index)
        self.state["pods"][f"{node.name}/{pod}"] = {"netns": netns, "generation": generation}
        self._remember_netns(netns)
        run("ip", "netns", "add", netns)
        run("ip", "-n", netns, "link", "set", "lo", "up")
        # Like a CNI, a veth to the node carries the pod's own address; pods of different
        # nodes are not routed to each other: they meet only over dtService overlays.
        run("ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name",
            f"vpod{pod_index}-{generation}"[:15], "netns", node.netns)
        run("ip", "-n", netns, "addr", "add", f"{pod_ip}/32", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        netns_path = f"/run/netns/{netns}"
        manifest = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": node.namespace,
                         "labels": labels or {"app": pod},
                         "annotations": {NETNS_ANNOTATION: netns_path}},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": PAUSE_IMAGE}]},
        }
        existing = self.kubectl(node, "get", "pod", pod, "-n", node.namespace, "-o", "name",
                                admin=True, check=False)
        if existing.returncode == 0:
            # A restart: the sandbox (netns) is new, the Pod object stays.
            self.kubectl(node, "annotate", "--overwrite", "pod", pod, "-n", node.namespace,
                         f"{NETNS_ANNOTATION}={netns_path}", admin=True)
        else:
            self.kubectl(node, "apply", "-f", "-", admin=True, stdin=json.dumps(manifest))
        self._mark_running(node, pod, pod_ip)
        return netns_path

    def _mark_running(self, node: Node, pod: str, pod_ip: str) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {"status": {
            "phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
            "hostIP": node.address, "hostIPs": [{"ip": node.address}], "startTime": now,
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": now}
                           for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": "main", "image": PAUSE_IMAGE, "imageID": "",
                                   "ready": True, "restartCount": 0, "started": True,
                                   "state": {"running": {"startedAt": now}}}],
        }}
        self.kubectl(node, "patch", "pod", pod, "-n", node.namespace, "--subresource=status",
                     "--type=merge", "-p", json.dumps(status), admin=True)

    def restart_pod(self, node_name: str, pod: str) -> str:
        """A pod restart as a kubelet does it: a new sandbox netns, same Pod object."""
        self._delete_pod_netns(node_name, pod)
        return self.create_pod(node_name, pod)

    def delete_pod(self, node_name: str, pod: str) -> None:
        node = self.node(node_name)
        self.kubectl(node, "delete", "pod", pod, "-n", node.namespace, "--grace-period=0",
                     "--force", "--ignore-not-found", "--wait=false", admin=True)
        self._delete_pod_netns(node_name, pod)
        self.state["pods"].pop(f"{node_name}/{pod}", None)
        self._save()

    def _delete_pod_netns(self, node_name: str, pod: str) -> None:
        record = self.state["pods"].get(f"{node_name}/{pod}")
        if record:
            delete_netns(record["netns"])
            self.state["netns"] = [n for n in self.state["netns"] if n != record["netns"]]
            self._save()

    def pod_netns(self, node_name: str, pod: str) -> str:
        return self.state["pods"][f"{node_name}/{pod}"]["netns"]

    # -- status and stop ------------------------------------------------------------------
    def status(self) -> dict:
        alive = [p for p in self.state["pids"] if process_alive(p["pid"], p["exe"])]
        return {"dir": str(self.dir), "clusters": [c["server"] for c in self.state["clusters"]],
                "nodes": [n.name for n in self.nodes], "processes_alive": len(alive),
                "processes_recorded": len(self.state["pids"]),
                "netns": sorted(set(self.state["netns"]) & set(list_netns()))}

    def diagnose(self) -> str:
        """What a failed test needs to be explained: every pod's WireGuard state (``wg show``
        prints no private key), each node's dtServices, and the end of the daemon's log."""
        lines = []
        for netns in sorted(set(self.state["netns"]) & set(list_netns())):
            shown = subprocess.run(["ip", "netns", "exec", netns, "wg", "show", "all"], text=True,
                                   capture_output=True, check=False)
            addresses = subprocess.run(["ip", "-n", netns, "-br", "address"], text=True, capture_output=True,
                                       check=False)
            lines += [f"== {netns}", addresses.stdout.rstrip(), shown.stdout.rstrip()]
        for node in self.nodes:
            described = self.kubectl(node, "get", "dtservices", "-n", node.namespace, "-o", "yaml",
                                     admin=True, check=False)
            lines += [f"== dtServices of {node.name}", described.stdout.rstrip() or described.stderr.rstrip()]
        for log in sorted(self.dir.rglob("reconciler.log")):
            lines += [f"== {log}", *log.read_text(errors="replace").splitlines()[-60:]]
        return "\n".join(lines)

    def stop(self) -> None:
        """Remove every process, namespace and veth the bed made; safe after a crash."""
        # Processes started for this bed (the reconciler daemon and its runs) name its directory.
        for pid in processes_mentioning(str(self.dir)):
            os.kill(pid, signal.SIGKILL)
        for record in reversed(self.state["pids"]):
            if process_alive(record["pid"], record["exe"]):
                os.killpg(record["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 15
        for record in self.state["pids"]:
            while process_alive(record["pid"], record["exe"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(record["pid"], record["exe"]):
                os.killpg(record["pid"], signal.SIGKILL)
        # A killed process can sit in uninterruptible disk sleep for a moment: wait it out.
        deadline = time.monotonic() + 15
        for record in self.state["pids"]:
            while process_alive(record["pid"], record["exe"]) and time.monotonic() < deadline:
                time.sleep(0.1)
        # Any namespace of ours, also ones a crashed run made but did not record.
        for netns in sorted(set(self.state["netns"]) | {n for n in list_netns() if n.startswith(self.prefix)}):
            delete_netns(netns)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.state = self._load()
        self.state["prefix"] = self.prefix
        log("stopped; nothing of the test bed is left")


def process_alive(pid: int, exe: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return cmdline == exe and state != "Z"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def list_netns() -> list[str]:
    netns_dir = Path("/run/netns")
    return sorted(p.name for p in netns_dir.iterdir()) if netns_dir.exists() else []


def delete_netns(name: str) -> None:
    """Kill what still runs inside a namespace (wireguard-go of the provisioner), then delete it."""
    if name not in list_netns():
        return
    pids = run("ip", "netns", "pids", name, check=False, capture=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    run("ip", "netns", "delete", name, check=False)


def write_kubeconfig(path: Path, *, server: str, ca: str, cert: str, key: str, user: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": user, "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def wait_for(url: str, *, what: str, ca: str | None = None, cert: tuple[str, str] | None = None,
             timeout: float = 120) -> None:
    context = None
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(*cert)
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last_error = str(error)
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not become healthy at {url} within {timeout:.0f}s: {last_error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help=f"state directory (DTSERVICE_TESTBED_DIR, default {DEFAULT_DIR})")
    parser.add_argument("--prefix",
                        help=f"network namespace prefix (DTSERVICE_TESTBED_PREFIX, default {DEFAULT_PREFIX})")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="bring up the control plane(s) and the nodes")
    start.add_argument("--nodes", type=int, default=3)
    start.add_argument("--clusters", type=int, default=1, help="API servers; node i goes to cluster i %% N")
    commands.add_parser("status", help="print what runs")
    commands.add_parser("diagnose", help="print the pods' WireGuard state, the dtServices and the daemon's log")
    commands.add_parser("stop", help="remove everything the bed made")
    pod = commands.add_parser("pod", help="create, restart or delete a test pod")
    pod.add_argument("action", choices=["create", "restart", "delete"])
    pod.add_argument("node")
    pod.add_argument("name")
    args = parser.parse_args(argv)
    bed = Testbed(args.dir, prefix=args.prefix)
    if args.command == "start":
        bed.start(nodes=args.nodes, clusters=args.clusters)
    elif args.command == "status":
        print(json.dumps(bed.status(), indent=2))
    elif args.command == "diagnose":
        print(bed.diagnose())
    elif args.command == "stop":
        bed.stop()
    elif args.action == "create":
        print(bed.create_pod(args.node, args.name))
    elif args.action == "restart":
        print(bed.restart_pod(args.node, args.name))
    else:
        bed.delete_pod(args.node, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
