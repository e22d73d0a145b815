"""The local federation: a real Kubernetes control plane and real kubelet nodes on one machine.

Owns everything the test bed starts and makes, and takes all of it down again:

- the underlay: a network namespace ``<prefix>underlay`` (prefix ``dtfed-`` by default) with a
  bridge on 198.18.0.0/16, and one veth to the host whose /30 in 198.19.255.0/24 is the bed's
  own, so several beds run side by side with the same node addresses;
- per cluster: a CA and client certificates, etcd, kube-apiserver and kube-controller-manager
  inside the underlay namespace (binaries from scripts/build-controlplane.sh); the API server
  listens on the underlay end of the host veth, reached from the host and from the nodes;
- per federation node: a Kubernetes namespace ``dtaas-nodeN-dtaas`` and a network namespace
  ``<prefix>nodeN`` whose ``eth0`` holds the node's underlay address on the bridge;
- per kubelet machine (``worker``): containerd, runc, CNI and a kubelet running in a node's
  network namespace, registered as the Kubernetes Node ``nodeK`` with the node address as its
  node IP. By default every federation node is a machine; ``--machines K`` lets node i run its
  pods on machine i % K (benchmarks with more nodes than 2 cores can run kubelets for);
- pods: made from Pod manifests with ``kubectl apply``, run by kubelet from the locally built
  image (``image``), with their ``eth0`` from CNI.

Every resource is written to ``state.json`` before it is made, so ``stop`` cleans up after a
crash too. Run as root; ``scripts/testbed --help`` lists the commands.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from image import IMAGE_NAME, write_image  # local modules of tools/testbed
from worker import (
    Machine,
    host_key_line,
    kill_cgroup_processes,
    make_cgroup_root,
    remove_cgroup_root,
    unmount_under,
    write_containerd_config,
    write_kubelet_config,
    write_sshd,
)

# Every network namespace of a bed starts with its prefix (DTSERVICE_TESTBED_PREFIX), so
# several beds can run side by side and stop removes exactly its own.
DEFAULT_PREFIX = "dtfed-"
UNDERLAY_BRIDGE = "dtbr0"
UNDERLAY_NETWORK = ipaddress.ip_network("198.18.0.0/16")
UNDERLAY_GATEWAY = str(UNDERLAY_NETWORK.network_address + 1)
# Each bed's host link is one /30 of this range, so host routes of two beds never overlap.
HOST_LINKS = ipaddress.ip_network("198.19.255.0/24")
PROVISIONER_USER = "dtservice-provisioner"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
DEFAULT_DIR = "/tmp/dtservice-testbed"
# Enough of a controller manager for namespaces and owned objects to really go away, for
# Deployments to keep their pods, and for the standard roles (edit, view) to carry the rules
# aggregated into them (a tenant bound to `edit` may then write dtServices).
KUBE_CONTROLLERS = ("namespace-controller", "garbage-collector-controller", "serviceaccount-controller",
                    "serviceaccount-token-controller", "deployment-controller", "replicaset-controller",
                    "clusterrole-aggregation-controller")
POD_READY_SECONDS = 120
# More kubelets than this on 2 cores starve the control plane; more nodes share them.
MAX_MACHINES = 3
START_ATTEMPTS = 2
# Seconds what runs in a namespace being deleted has to end on SIGTERM.
NETNS_GRACE_SECONDS = 2.0
IMPORT_ATTEMPTS = 3


def log(message: str) -> None:
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


def run(*argv: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, check=False, text=True, capture_output=capture)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {result.returncode}): "
                           f"{(result.stderr or '').strip()[-1000:]}")
    return result


def node_namespace(index: int) -> str:
    return f"dtaas-node{index}-dtaas"


def node_address(index: int) -> str:
    return str(UNDERLAY_NETWORK.network_address + 10 + index)


def pod_subnet(machine: int) -> str:
    return f"198.19.{machine + 1}.0/24"


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
    # The Kubernetes Node whose kubelet runs this node's pods, that kubelet's kubeconfig and
    # its containerd.
    kubelet_node: str = ""
    kubelet_kubeconfig: str = ""
    runtime_endpoint: str = ""


def kubelet_kubeconfig_name(machine: int) -> str:
    """The kubeconfig of machine ``machine``'s kubelet, in its cluster's directory (``_start_cluster`` writes it)."""
    return f"system-node-node{machine}.kubeconfig"


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

    @property
    def host_link_name(self) -> str:
        return f"{self.prefix}ul"[:15]

    # -- state ----------------------------------------------------------------------------
    def _load(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {"clusters": [], "nodes": [], "netns": [], "pids": [], "machines": [], "pod_netns": []}

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
    def start(self, *, nodes: int = 3, clusters: int = 1, machines: int | None = None) -> None:
        """``machines`` kubelets (default: one per node, at most ``MAX_MACHINES``); node i's
        pods run on machine i % machines, which must be in node i's cluster."""
        if self.state["clusters"]:
            raise SystemExit(f"a test bed is already recorded in {self.state_file}; run stop first")
        if os.geteuid() != 0:
            raise SystemExit("the test bed makes network namespaces: run it as root")
        bin_dir = Path(os.environ.get("DTSERVICE_CONTROLPLANE_BIN", ""))
        if not all((bin_dir / binary).exists() for binary in ("kube-apiserver", "kubelet", "crictl")):
            raise SystemExit("DTSERVICE_CONTROLPLANE_BIN is not set to the built control plane: "
                             "run scripts/setup.sh and source .dtservice.env")
        machines = machines or min(nodes, MAX_MACHINES)
        if machines > nodes or (machines < nodes and machines % clusters):
            raise SystemExit(f"{machines} kubelet machine(s) cannot serve {nodes} node(s) in {clusters} cluster(s): "
                             "node i runs on machine i % machines, which must be in cluster i % clusters")
        allow_many_wireguard_go()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once(bin_dir, nodes=nodes, clusters=clusters, machines=machines)
                break
            except RuntimeError as error:
                # The last resort, should a machine's containerd refuse the image after every
                # restart (``_import``): a new bed.
                log(f"start failed; cleaning up what was made: {error}")
                self.stop()
                if attempt == START_ATTEMPTS:
                    raise
            except BaseException:
                log("start failed; cleaning up what was made")
                self.stop()
                raise
        log(f"federation up: {nodes} node(s) on {machines} kubelet(s) in {clusters} cluster(s); state in {self.dir}")

    def _start_once(self, bin_dir: Path, *, nodes: int, clusters: int, machines: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state["prefix"] = self.prefix
        self._save()
        self._make_underlay()
        for index in range(clusters):
            self._start_cluster(index, bin_dir, machines=[k for k in range(machines) if k % clusters == index])
        for index in range(nodes):
            self._add_node(index, index % clusters, machine=index % machines)
        image = write_image(self.dir / "image.tar")
        for index in range(machines):
            self._start_machine(index, bin_dir, image)
        for index in range(machines):
            self._wait_node_ready(index)
        self._write_inventory()

    def _start_cluster(self, index: int, bin_dir: Path, *, machines: list[int]) -> None:
        from pki import write_cluster_pki  # local module: certificates only

        cluster_dir = self.dir / f"cluster{index}"
        cluster_dir.mkdir(parents=True, exist_ok=True)
        address = self.state["apiserver_address"]
        pki = write_cluster_pki(cluster_dir / "pki", server_addresses=[address], users={
            "admin": ["system:masters"],
            PROVISIONER_USER: [],
            "system:kube-controller-manager": [],
            KUBELET_CLIENT_USER: [],
            **{f"system:node:node{k}": ["system:nodes"] for k in machines},
        })
        # The control plane lives in the underlay namespace: ports there are all free.
        ports = {"etcd": 2379 + 10 * index, "etcd_peer": 2380 + 10 * index, "apiserver": 6443 + index}
        cluster = {"index": index, "dir": str(cluster_dir), "ports": ports,
                   "server": f"https://{address}:{ports['apiserver']}"}
        self.state["clusters"].append(cluster)
        self._save()

        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        log(f"cluster{index}: starting etcd on {etcd_url} in {self.underlay_netns}")
        self._spawn(cluster_dir / "etcd.log", str(bin_dir / "etcd"),
                    "--name", f"cluster{index}", "--data-dir", str(cluster_dir / "etcd"),
                    "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                    "--listen-peer-urls", f"http://127.0.0.1:{ports['etcd_peer']}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['etcd_peer']}",
                    "--initial-cluster", f"cluster{index}=http://127.0.0.1:{ports['etcd_peer']}",
                    "--unsafe-no-fsync", "--log-level", "warn", netns=self.underlay_netns)

        log(f"cluster{index}: starting kube-apiserver on {cluster['server']}")
        kubelet_client = pki["users"][KUBELET_CLIENT_USER]
        self._spawn(cluster_dir / "kube-apiserver.log", str(bin_dir / "kube-apiserver"),
                    "--etcd-servers", etcd_url,
                    "--bind-address", address, "--secure-port", str(ports["apiserver"]),
                    "--cert-dir", str(cluster_dir / "pki"),
                    "--tls-cert-file", pki["serving_cert"], "--tls-private-key-file", pki["serving_key"],
                    "--client-ca-file", pki["ca_cert"],
                    "--authorization-mode", "Node,RBAC",
                    "--enable-admission-plugins", "NodeRestriction",
                    "--kubelet-client-certificate", kubelet_client["cert"],
                    "--kubelet-client-key", kubelet_client["key"],
                    "--kubelet-preferred-address-types", "InternalIP",
                    "--service-cluster-ip-range", "10.0.0.0/24",
                    "--service-account-issuer", f"https://{address}:{ports['apiserver']}",
                    "--service-account-key-file", pki["sa_public"],
                    "--service-account-signing-key-file", pki["sa_private"],
                    "--allow-privileged=true",
                    "--disable-admission-plugins", "ServiceAccount",
                    "--enable-priority-and-fairness=false",
                    "--v", "1", netns=self.underlay_netns)
        for user in ("admin", PROVISIONER_USER, "system:kube-controller-manager",
                     *(f"system:node:node{k}" for k in machines)):
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
                    "--v", "1", netns=self.underlay_netns)

    def _spawn(self, log_path: Path, *argv: str, netns: str | None = None) -> None:
        # nsenter --net, not `ip netns exec`: the latter mounts a fresh /sys, which hides the
        # cgroup mounts kubelet and runc need. nsenter execs the program: the pid is its own.
        command = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv] if netns else list(argv)
        with open(log_path, "ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.state["pids"].append({"pid": process.pid, "exe": argv[0], "argv": command, "log": str(log_path)})
        self._save()

    def restart_apiserver(self, cluster: int = 0) -> None:
        """Stop a cluster's kube-apiserver and start it again with the same flags (etcd keeps the data)."""
        self.stop_apiserver(cluster)
        self.start_apiserver(cluster)

    def _start_again(self, record: dict) -> None:
        """The stopped process of ``record`` (one of ``state["pids"]``) started with the same argv and log."""
        self.state["pids"].remove(record)
        with open(record["log"], "ab") as out:
            process = subprocess.Popen(record["argv"], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.state["pids"].append({**record, "pid": process.pid})
        self._save()

    def _apiserver_record(self, cluster: int) -> dict:
        cluster_dir = self.state["clusters"][cluster]["dir"]
        return next(p for p in self.state["pids"]
                    if p["exe"].endswith("/kube-apiserver") and p["log"].startswith(cluster_dir))

    def stop_apiserver(self, cluster: int = 0) -> None:
        """Stop a cluster's kube-apiserver (its clients then find nothing listening) until ``start_apiserver``."""
        stop_process(self._apiserver_record(cluster))

    def start_apiserver(self, cluster: int = 0) -> None:
        """Start a stopped kube-apiserver again with the same flags; returns once it is ready."""
        record = self._apiserver_record(cluster)
        if process_alive(record["pid"], record["exe"]):
            return
        self._start_again(record)
        pki = Path(self.state["clusters"][cluster]["dir"]) / "pki"
        wait_for(f"{self.state['clusters'][cluster]['server']}/readyz", what=f"cluster{cluster} kube-apiserver",
                 ca=str(pki / "ca.crt"), cert=(str(pki / "admin.crt"), str(pki / "admin.key")))

    def _remember_netns(self, name: str) -> None:
        self.state["netns"].append(name)
        self._save()

    def _make_underlay(self) -> None:
        link = self._free_host_link()
        host_address, underlay_address = str(link.network_address + 1), str(link.network_address + 2)
        self.state.update(host_link=str(link), apiserver_address=underlay_address)
        self._remember_netns(self.underlay_netns)
        run("ip", "netns", "add", self.underlay_netns)
        run("ip", "-n", self.underlay_netns, "link", "add", UNDERLAY_BRIDGE, "type", "bridge")
        run("ip", "-n", self.underlay_netns, "addr", "add", f"{UNDERLAY_GATEWAY}/{UNDERLAY_NETWORK.prefixlen}",
            "dev", UNDERLAY_BRIDGE)
        run("ip", "-n", self.underlay_netns, "link", "set", UNDERLAY_BRIDGE, "up")
        run("ip", "-n", self.underlay_netns, "link", "set", "lo", "up")
        # Made in the underlay namespace and moved out, so deleting that namespace removes both ends.
        host_end = self.host_link_name
        run("ip", "-n", self.underlay_netns, "link", "add", "host0", "type", "veth", "peer", "name", host_end,
            "netns", "1")
        run("ip", "-n", self.underlay_netns, "addr", "add", f"{underlay_address}/{link.prefixlen}", "dev", "host0")
        run("ip", "-n", self.underlay_netns, "link", "set", "host0", "up")
        run("ip", "addr", "add", f"{host_address}/{link.prefixlen}", "dev", host_end)
        run("ip", "link", "set", host_end, "up")

    @staticmethod
    def _free_host_link() -> ipaddress.IPv4Network:
        used = set()
        for entry in json.loads(run("ip", "-j", "addr", capture=True).stdout or "[]"):
            for info in entry.get("addr_info", []):
                if info.get("family") == "inet":
                    used.add(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network)
        for link in HOST_LINKS.subnets(new_prefix=30):
            if not any(link.overlaps(network) for network in used):
                return link
        raise SystemExit(f"every host link of {HOST_LINKS} is taken: stop a test bed first")

    def _add_node(self, index: int, cluster_index: int, *, machine: int) -> None:
        cluster = self.state["clusters"][cluster_index]
        netns = f"{self.prefix}node{index}"
        node = Node(index=index, cluster=cluster_index, name=f"node{index}",
                    namespace=node_namespace(index), netns=netns, address=node_address(index),
                    kubeconfig=str(Path(cluster["dir"]) / f"{PROVISIONER_USER}.kubeconfig"),
                    admin_kubeconfig=str(Path(cluster["dir"]) / "admin.kubeconfig"),
                    kubelet_node=f"node{machine}",
                    kubelet_kubeconfig=str(Path(cluster["dir"]) / kubelet_kubeconfig_name(machine)),
                    runtime_endpoint=self._machine(machine).runtime_endpoint)
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
        run("ip", "-n", netns, "route", "add", f"{self.state['apiserver_address']}/32", "via", UNDERLAY_GATEWAY)
        self.state["nodes"].append(node.__dict__)
        self._save()
        self.kubectl(node, "create", "namespace", node.namespace, admin=True)

    def _machine(self, index: int) -> Machine:
        return Machine(index=index, node_name=f"node{index}", netns=f"{self.prefix}node{index}",
                       address=node_address(index), dir=str(self.dir / f"machine{index}"),
                       cgroup=f"/{self.prefix}machine{index}", pod_subnet=pod_subnet(index))

    @property
    def machines(self) -> list[Machine]:
        return [Machine(**m) for m in self.state.get("machines", [])]

    def _start_machine(self, index: int, bin_dir: Path, image: Path) -> None:
        """containerd and kubelet of one machine, in its node's network namespace."""
        node = self.nodes[index]
        machine = self._machine(index)
        cluster_dir = Path(self.state["clusters"][node.cluster]["dir"])
        self.state.setdefault("machines", []).append(machine.__dict__)
        self._save()
        Path(machine.dir).mkdir(parents=True, exist_ok=True)
        make_cgroup_root(machine.cgroup)
        log(f"machine{index}: starting containerd and kubelet as Node {machine.node_name} at {machine.address}")
        self._spawn(Path(machine.dir) / "containerd.log", shutil.which("containerd") or "/usr/bin/containerd",
                    "--config", write_containerd_config(machine, sandbox_image=IMAGE_NAME), netns=machine.netns)
        wait_for_containerd(machine)
        self._import(machine, IMAGE_NAME, image)
        self._spawn(Path(machine.dir) / "sshd.log", "/usr/sbin/sshd", "-D", "-e",
                    "-f", write_sshd(machine, authorized_keys=self._ssh_client_key() + ".pub"), netns=machine.netns)
        with open(self.dir / "ssh" / "known_hosts", "a") as known:
            known.write(host_key_line(machine) + "\n")
        self._spawn(Path(machine.dir) / "kubelet.log", str(bin_dir / "kubelet"),
                    "--config", write_kubelet_config(machine, client_ca=str(cluster_dir / "pki" / "ca.crt")),
                    "--kubeconfig", str(cluster_dir / kubelet_kubeconfig_name(index)),
                    "--hostname-override", machine.node_name, "--node-ip", machine.address,
                    "--root-dir", f"{machine.dir}/kubelet", "--v", "1", netns=machine.netns)

    def import_image(self, name: str, extra_files: dict[str, Path]) -> None:
        """Build an image of the bed's busybox plus ``extra_files`` (path in the image ->
        file here) and import it into every machine's containerd, as a registry would serve it."""
        image = write_image(self.dir / "import.tar", name=name, extra_files=extra_files)
        for machine in self.machines:
            self._import(machine, name, image)
        image.unlink()

    def _import(self, machine: Machine, name: str, image: Path) -> None:
        """``import_into``, tried again with the machine's containerd started anew when it refuses
        the import with "content digest ...: not found": containerd 1.6 now and then refuses every
        import into one instance, just after its start or later. (At the bed's start, a new bed
        was the only remedy, and twice in a row failed a CI rehearsal's test.)"""
        for attempt in range(1, IMPORT_ATTEMPTS + 1):
            try:
                import_into(machine, name, image)
                return
            except RuntimeError as error:
                if attempt == IMPORT_ATTEMPTS or "content digest" not in str(error):
                    raise
                log(f"machine{machine.index}: {error}; starting its containerd again")
                self.restart_containerd(machine)

    def restart_containerd(self, machine: Machine) -> None:
        """Stop a machine's containerd and start it with the same flags (its state, the pods'
        containers and their shims stay; kubelet reconnects); returns once it listens."""
        log_path = str(Path(machine.dir) / "containerd.log")
        record = next(p for p in self.state["pids"] if p["log"] == log_path)
        stop_process(record)
        Path(machine.socket).unlink(missing_ok=True)
        self._start_again(record)
        wait_for_containerd(machine)

    def _ssh_client_key(self) -> str:
        """The key Ansible logs in to the machines with (made once per bed)."""
        key = self.dir / "ssh" / "id_ed25519"
        if not key.exists():
            key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dtservice-testbed", "-f", str(key), capture=True)
        return str(key)

    def ssh_vars(self, node: Node) -> dict:
        """Host variables that make Ansible reach the node's machine over SSH, as a remote
        federation node is reached: sshd listens on the node address inside the node's
        namespace, so the client's connection enters that namespace through nc."""
        machine = next(m for m in self.machines if m.node_name == node.kubelet_node)
        return {"ansible_connection": "ssh", "ansible_host": machine.address, "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.dir / "ssh" / "id_ed25519"),
                "ansible_ssh_common_args": (
                    f"-o ProxyCommand='nsenter --net=/run/netns/{machine.netns} nc %h %p' "
                    f"-o UserKnownHostsFile={self.dir / 'ssh' / 'known_hosts'}"),
                # The machine's host key is checked; its connections are the bed's own (every
                # bed has the same node addresses, so Ansible's shared ~/.ansible/cp would mix them).
                "ansible_host_key_checking": True, "ansible_control_path_dir": str(self.dir / "ssh" / "cp"),
                "ansible_python_interpreter": sys.executable}

    def _wait_node_ready(self, index: int) -> None:
        node = self.nodes[index]
        result = self.kubectl(node, "wait", "--for=condition=Ready", f"node/node{index}", "--timeout=120s",
                              admin=True, check=False)
        if result.returncode != 0:
            # `kubectl wait` on a Node not registered yet fails at once: give kubelet time.
            deadline = time.monotonic() + 120
            while self.kubectl(node, "get", "node", f"node{index}", admin=True, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kubelet of machine{index} did not register; see machine{index}/kubelet.log")
                time.sleep(0.5)
            self.kubectl(node, "wait", "--for=condition=Ready", f"node/node{index}", "--timeout=120s", admin=True)

    def _write_inventory(self) -> None:
        """An inventory of this bed (the static inventories/local matches the default 3 nodes)."""
        hosts = {node.name: self._host_vars(node) for node in self.nodes}
        inventory = {"all": {"children": {"federation": {"hosts": hosts}}}}
        (self.dir / "inventory.json").write_text(json.dumps(inventory, indent=2))
        # Given after inventories/local, this makes Ansible reach every node over SSH.
        remote = {"federation": {"hosts": {
            node.name: {**self.ssh_vars(node), "dtservice_node_crictl": self._host_vars(node)["dtservice_node_crictl"]}
            for node in self.nodes}}}
        (self.dir / "ssh-inventory.json").write_text(json.dumps(remote, indent=2))

    @staticmethod
    def _host_vars(node: Node) -> dict:
        return {"dtservice_node_namespace": node.namespace, "dtservice_node_kubeconfig": node.kubeconfig,
                "dtservice_node_address": node.address, "dtservice_node_netns": node.netns,
                "dtservice_node_kubelet_nodes": [node.kubelet_node],
                "dtservice_node_kubelet_kubeconfig": node.kubelet_kubeconfig,
                "dtservice_node_runtime_endpoint": node.runtime_endpoint,
                # An agent reached over SSH has the login's PATH, not the bed's.
                "dtservice_node_crictl": shutil.which("crictl") or "crictl"}

    def write_inventory(self, path: str | os.PathLike, *, services: dict[str, list[dict]],
                        domains: list[dict] | None = None, daemon: bool = False, ssh: bool = False) -> str:
        """An inventory of the bed's nodes (like inventories/local) with these declarations;
        the reconciler daemon is left out unless asked for; ``ssh``: every node is reached
        over SSH on its kubelet machine, and the modules run there."""
        hosts = {}
        for node in self.nodes:
            admin = str(Path(node.admin_kubeconfig))
            hosts[node.name] = {**self._host_vars(node), "dtservice_crds_kubeconfig": admin,
                                "dtservice_services": services.get(node.name, []),
                                **(self.ssh_vars(node) if ssh else {})}
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
                check: bool = True, kubeconfig: str | None = None) -> subprocess.CompletedProcess:
        """kubectl as the provisioner, as the cluster's admin (``admin``), or as whoever
        ``kubeconfig`` names (a tenant's, from ``tenant_kubeconfig``)."""
        kubeconfig = kubeconfig or (node.admin_kubeconfig if admin else node.kubeconfig)
        return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], input=stdin,
                              text=True, capture_output=True, check=check)

    # -- tenants --------------------------------------------------------------------------
    def tenant_kubeconfig(self, node: Node, *, user: str, role: str = "edit", groups: tuple[str, ...] = ()) -> str:
        """A kubeconfig for a plain user of the node's cluster (client certificate CN ``user``,
        O ``groups``, signed by the cluster's CA), bound to the ClusterRole ``role`` in the
        node's namespace only (a RoleBinding ``tenant-<user>``); returns its path. The user
        holds nothing else: no cluster-wide binding, no other namespace."""
        from pki import issue_client_certificate  # local module: certificates only

        pki = Path(self.state["clusters"][node.cluster]["dir"]) / "pki"
        stem = f"tenant-{user.replace(':', '-')}"
        cert, key = issue_client_certificate(pki, user=user, groups=list(groups), stem=stem)
        path = pki.parent / f"{stem}.kubeconfig"
        write_kubeconfig(path, server=self.state["clusters"][node.cluster]["server"], ca=str(pki / "ca.crt"),
                         cert=cert, key=key, user=user)
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": f"tenant-{user.replace(':', '-')}", "namespace": node.namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}
        self.kubectl(node, "apply", "-f", "-", admin=True, stdin=json.dumps(binding))
        return str(path)

    # -- pods -----------------------------------------------------------------------------
    def pod_manifest(self, node_name: str, pod: str, *, labels: dict[str, str] | None = None,
                     kubelet_node: str | None = None) -> dict:
        """A plain Pod of the bed's image, bound to the node's kubelet (the bed has no scheduler)."""
        node = self.node(node_name)
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": node.namespace, "labels": labels or {"app": pod}},
                "spec": {"nodeName": kubelet_node or node.kubelet_node, "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "image": IMAGE_NAME, "imagePullPolicy": "Never"}]}}

    def create_pod(self, node_name: str, pod: str, *, labels: dict[str, str] | None = None,
                   wait: bool = True) -> str:
        """``kubectl apply`` a Pod on the node's kubelet; waits until it runs; returns its netns name."""
        node = self.node(node_name)
        self.kubectl(node, "apply", "-f", "-", admin=True,
                     stdin=json.dumps(self.pod_manifest(node_name, pod, labels=labels)))
        if not wait:
            return ""
        return self._running(node_name, pod)[1]

    def wait_pod_running(self, node_name: str, pod: str, *, timeout: float = POD_READY_SECONDS) -> dict:
        """The pod object, once it runs with an IP."""
        return self._running(node_name, pod, timeout=timeout)[0]

    def _running(self, node_name: str, pod: str, *, timeout: float = POD_READY_SECONDS,
                 address: str | None = None) -> tuple[dict, str]:
        """The running pod and its netns name, which is recorded for stop (crash-safe);
        with ``address``, once its status names that IP."""
        node = self.node(node_name)
        deadline = time.monotonic() + timeout
        while True:
            found = self.kubectl(node, "get", "pod", pod, "-n", node.namespace, "-o", "json", admin=True, check=False)
            if found.returncode == 0:
                obj = json.loads(found.stdout)
                ip = obj["status"].get("podIP")
                if obj["status"].get("phase") == "Running" and ip and address in (None, ip) \
                        and not obj["metadata"].get("deletionTimestamp"):
                    netns = self.pod_netns(node_name, pod)
                    self.state["pod_netns"] = sorted({*self.state.setdefault("pod_netns", []), netns})
                    self._save()
                    return obj, netns
            if time.monotonic() > deadline:
                raise RuntimeError(f"pod {pod} of {node_name} is not Running after {timeout:.0f}s: "
                                   f"{found.stdout[-2000:]}")
            time.sleep(0.2)

    def _pod_runtime(self, node_name: str, pod: str) -> tuple[str, str]:
        """The pod's UID and the runtime endpoint of the machine it is scheduled on (not
        necessarily its federation node's)."""
        node = self.node(node_name)
        obj = json.loads(self.kubectl(node, "get", "pod", pod, "-n", node.namespace, "-o", "json", admin=True).stdout)
        machine = next(m for m in self.machines if m.node_name == obj["spec"]["nodeName"])
        return obj["metadata"]["uid"], machine.runtime_endpoint

    def sandboxes(self, node_name: str, pod: str) -> list[dict]:
        """The pod's ready CRI sandboxes (normally one), by the pod's UID from the API."""
        uid, endpoint = self._pod_runtime(node_name, pod)
        return self._sandboxes(endpoint, uid)

    def _sandboxes(self, endpoint: str, uid: str) -> list[dict]:
        listed = self.crictl(endpoint, "pods", "--label", f"io.kubernetes.pod.uid={uid}", "--state", "ready",
                             "-o", "json")
        return json.loads(listed.stdout or "{}").get("items") or []

    def crictl(self, endpoint: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["crictl", "--runtime-endpoint", endpoint, "--timeout", "10s", *args],
                              text=True, capture_output=True, check=check)

    def _inspect_sandbox(self, endpoint: str, sandbox_id: str) -> dict:
        return json.loads(self.crictl(endpoint, "inspectp", "-o", "json", sandbox_id).stdout)

    def sandbox_netns(self, endpoint: str, sandbox_id: str) -> str:
        namespaces = self._inspect_sandbox(endpoint, sandbox_id)["info"]["runtimeSpec"]["linux"]["namespaces"]
        return next(n["path"] for n in namespaces if n["type"] == "network")

    def pod_netns(self, node_name: str, pod: str) -> str:
        """The name (under /run/netns) of the running pod's network namespace, from the runtime."""
        uid, endpoint = self._pod_runtime(node_name, pod)
        ready = self._sandboxes(endpoint, uid)
        if not ready:
            raise RuntimeError(f"pod {pod} of {node_name} has no ready sandbox")
        return Path(self.sandbox_netns(endpoint, ready[0]["id"])).name

    def restart_pod(self, node_name: str, pod: str) -> str:
        """A pod restart as kubelet does it after its sandbox died: a new sandbox (a new
        network namespace) for the same Pod object. Returns the new netns name."""
        uid, endpoint = self._pod_runtime(node_name, pod)
        old = {s["id"] for s in self._sandboxes(endpoint, uid)}
        for sandbox in old:
            self.crictl(endpoint, "stopp", sandbox)
        deadline = time.monotonic() + POD_READY_SECONDS
        while not (new := [s["id"] for s in self._sandboxes(endpoint, uid) if s["id"] not in old]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"kubelet made no new sandbox for {pod} of {node_name}")
            time.sleep(0.2)
        # The new sandbox may have a new IP, and the Pod's status names the old one for a
        # moment after it runs: a pass then (rightly) refuses the namespace that does not
        # hold the IP the API server gives for the pod.
        address = self._inspect_sandbox(endpoint, new[0])["status"]["network"]["ip"]
        return self._running(node_name, pod, address=address)[1]

    def delete_pod(self, node_name: str, pod: str, *, wait: bool = True) -> None:
        node = self.node(node_name)
        self.kubectl(node, "delete", "pod", pod, "-n", node.namespace, "--ignore-not-found",
                     f"--wait={'true' if wait else 'false'}", "--timeout=60s", admin=True)

    def _remember_sandboxes(self) -> None:
        """The CNI namespaces of every sandbox of the bed's runtimes (also of pods a Deployment
        made), so that stop removes them even if kubelet or containerd fails it."""
        known = set(self.state.setdefault("pod_netns", []))
        for machine in self.machines:
            listed = self.crictl(machine.runtime_endpoint, "pods", "-q", check=False)
            for sandbox in listed.stdout.split():
                try:
                    known.add(Path(self.sandbox_netns(machine.runtime_endpoint, sandbox)).name)
                except (subprocess.CalledProcessError, StopIteration, KeyError, ValueError):
                    continue
        self.state["pod_netns"] = sorted(known)
        self._save()

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
        for netns in sorted((set(self.state["netns"]) | set(self.state.get("pod_netns", []))) & set(list_netns())):
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
        """Remove every process, namespace, veth, mount and cgroup the bed made; safe after a crash."""
        self._delete_workloads()
        # Processes started for this bed (the reconciler daemon and its runs, containerd's
        # shims) name its directory.
        for pid in processes_mentioning(str(self.dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
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
        for machine in self.machines:
            kill_cgroup_processes(machine.cgroup)
            unmount_under(machine.dir)
            remove_cgroup_root(machine.cgroup)
        delete_netns(self.state.get("pod_netns", []))
        for netns in self.state.get("pod_netns", []):
            Path("/run/netns", netns).unlink(missing_ok=True)
        # The kernel frees a deleted namespace's devices later: the host end goes now, so
        # that a bed started right after with this prefix can make it again.
        run("ip", "link", "del", self.host_link_name, check=False, capture=True)
        # Any namespace of ours, also ones a crashed run made but did not record.
        delete_netns(sorted(set(self.state["netns"]) | {n for n in list_netns() if n.startswith(self.prefix)}))
        unmount_under(str(self.dir))
        shutil.rmtree(self.dir, ignore_errors=True)
        self.state = self._load()
        self.state["prefix"] = self.prefix
        log("stopped; nothing of the test bed is left")

    def _delete_workloads(self) -> None:
        """Pods go first, through the API, so that kubelet and the CNI plugin take down their
        sandboxes and namespaces themselves; a bed whose API server is gone skips this."""
        if not self.machines or not self.state["nodes"]:
            return
        self._remember_sandboxes()
        for cluster in self.state["clusters"]:
            admin = str(Path(cluster["dir"]) / "admin.kubeconfig")
            subprocess.run(["kubectl", "--kubeconfig", admin, "delete", "deployments,replicasets,pods", "--all",
                            "--all-namespaces", "--grace-period=1", "--wait=false", "--request-timeout=10s"],
                           capture_output=True, check=False)
        deadline = time.monotonic() + 60
        for machine in self.machines:
            while time.monotonic() < deadline:
                # A stopped sandbox has no namespace left; kubelet removes its record later.
                listed = self.crictl(machine.runtime_endpoint, "pods", "-q", "--state", "ready", check=False)
                if listed.returncode != 0 or not listed.stdout.split():
                    break
                time.sleep(0.3)


def wait_for_containerd(machine: Machine) -> None:
    """Return once the machine's containerd listens on its socket (30 s at most)."""
    deadline = time.monotonic() + 30
    while not Path(machine.socket).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"containerd of machine{machine.index} did not open {machine.socket}")
        time.sleep(0.1)


def import_into(machine: Machine, name: str, image: Path) -> None:
    """``ctr images import`` into the machine's containerd (a failure fails the bed's start,
    which is tried once more: see ``Testbed.start``)."""
    run("ctr", "-a", machine.socket, "-n", "k8s.io", "images", "import", "--index-name", name, str(image), capture=True)


def stop_process(record: dict) -> None:
    """SIGTERM to the process group of ``record`` (one of ``state["pids"]``), SIGKILL after 30 s:
    a graceful shutdown that drags on (an API server's open watches) would leave the one
    started after it nothing to start while the old one still holds its port or socket."""
    os.killpg(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while process_alive(record["pid"], record["exe"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(record["pid"], record["exe"]):
        os.killpg(record["pid"], signal.SIGKILL)
        while process_alive(record["pid"], record["exe"]):
            time.sleep(0.1)


def process_alive(pid: int, exe: str) -> bool:
    """The pid is a live process of that program (sshd rewrites its command line, so the
    executable is compared, not argv[0])."""
    try:
        running = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return running == os.path.realpath(exe) and not_exited(pid)


def not_exited(pid: int) -> bool:
    """The pid is a process that has not exited (a zombie has: it holds nothing any more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def ancestors() -> set[int]:
    """This process and the ones that started it (an ansible-playbook that names the bed's
    directory in its inventory must not be killed by the bed it asked to stop)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def processes_mentioning(text: str) -> list[int]:
    found, own = [], ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
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


def delete_netns(names: list[str]) -> None:
    """End what still runs inside the namespaces (wireguard-go of the provisioner), then delete
    them. SIGTERM first, SIGKILL after a grace, for all of them at once: a wireguard-go killed
    outright leaves its control socket behind in /var/run/wireguard (three after each CI run),
    and one takes up to two seconds to end on SIGTERM."""
    existing = set(list_netns())
    present = [name for name in names if name in existing]
    pids = [int(pid) for name in present
            for pid in run("ip", "netns", "pids", name, check=False, capture=True).stdout.split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + NETNS_GRACE_SECONDS
        while (pids := [pid for pid in pids if not_exited(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            break
    for name in present:
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
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help=f"state directory (DTSERVICE_TESTBED_DIR, default {DEFAULT_DIR})")
    parser.add_argument("--prefix",
                        help=f"network namespace prefix (DTSERVICE_TESTBED_PREFIX, default {DEFAULT_PREFIX})")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="bring up the control plane(s) and the nodes")
    start.add_argument("--nodes", type=int, default=3)
    start.add_argument("--clusters", type=int, default=1, help="API servers; node i goes to cluster i %% N")
    start.add_argument("--machines", type=int,
                       help=f"kubelets (default: one per node, at most {MAX_MACHINES}); "
                            "node i's pods run on machine i %% K")
    commands.add_parser("status", help="print what runs")
    commands.add_parser("diagnose", help="print the pods' WireGuard state, the dtServices and the daemon's log")
    commands.add_parser("stop", help="remove everything the bed made")
    image = commands.add_parser("image",
                                help="build an image (busybox + files) and import it into every kubelet's runtime")
    image.add_argument("name", help="image reference, e.g. docker.io/local/geth:1")
    image.add_argument("--add", action="append", default=[], metavar="IMAGE_PATH=FILE",
                       help="a file of this machine to put into the image, e.g. /bin/geth=/path/to/geth")
    pod = commands.add_parser("pod", help="kubectl apply a Pod on a node's kubelet, restart its sandbox, or delete it")
    pod.add_argument("action", choices=["create", "restart", "delete"])
    pod.add_argument("node")
    pod.add_argument("name")
    args = parser.parse_args(argv)
    bed = Testbed(args.dir, prefix=args.prefix)
    if args.command == "start":
        bed.start(nodes=args.nodes, clusters=args.clusters, machines=args.machines)
    elif args.command == "status":
        print(json.dumps(bed.status(), indent=2))
    elif args.command == "diagnose":
        print(bed.diagnose())
    elif args.command == "stop":
        bed.stop()
    elif args.command == "image":
        bed.import_image(args.name, dict(item.split("=", 1) for item in args.add))
    elif args.action == "create":
        print(bed.create_pod(args.node, args.name))
    elif args.action == "restart":
        print(bed.restart_pod(args.node, args.name))
    else:
        bed.delete_pod(args.node, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
