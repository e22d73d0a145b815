"""The test bed's worker machines: a real kubelet with containerd, runc and CNI, per machine.

Owns the files and host state one kubelet machine needs (recipe: shared/notes/real-nodes.md):
containerd's config (its own root, state and socket; the CRI plugin with the locally built
sandbox image and the bridge + host-local CNI network), the kubelet's configuration, a cgroup
root of its own in every cgroup v1 hierarchy, and taking all of that down again (pods'
processes, mounts, CNI namespaces, cgroups). The processes themselves are started by
``testbed``, inside the machine's network namespace, so the machine's node address is the
kubelet's ``--node-ip`` and CNI's bridge lives there too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CNI_BIN_DIR = "/usr/lib/cni"
KUBELET_PORT = 10250


@dataclass(frozen=True)
class Machine:
    """One kubelet machine: its Kubernetes node name, network namespace and files."""

    index: int
    node_name: str
    netns: str
    address: str
    dir: str
    cgroup: str
    pod_subnet: str

    @property
    def socket(self) -> str:
        return f"{self.dir}/containerd.sock"

    @property
    def runtime_endpoint(self) -> str:
        return f"unix://{self.socket}"


def hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies (cpu, memory, ..., the named systemd one)."""
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and p.name != "unified"
                  and (p / "cgroup.procs").exists())


def make_cgroup_root(name: str) -> None:
    """kubelet's ``cgroupRoot`` must exist in every hierarchy; cpuset needs its cpus and mems."""
    for hierarchy in hierarchies():
        path = hierarchy / name.lstrip("/")
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for setting in ("cpuset.cpus", "cpuset.mems"):
                (path / setting).write_text((hierarchy / setting).read_text())


def kill_cgroup_processes(name: str) -> None:
    """SIGKILL every process left in the machine's cgroups (containers whose shim is gone)."""
    for _attempt in range(50):
        pids = set()
        for hierarchy in hierarchies():
            root = hierarchy / name.lstrip("/")
            if root.exists():
                for procs in root.rglob("cgroup.procs"):
                    try:
                        pids.update(int(p) for p in procs.read_text().split())
                    except OSError:
                        continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def remove_cgroup_root(name: str) -> None:
    """rmdir the machine's cgroups, deepest first (a cgroup directory cannot be removed with children)."""
    for hierarchy in hierarchies():
        root = hierarchy / name.lstrip("/")
        if not root.exists():
            continue
        for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                path.rmdir()
            except OSError:
                pass
        try:
            root.rmdir()
        except OSError:
            pass


def unmount_under(directory: str) -> None:
    """Unmount what containerd and kubelet left mounted below ``directory`` (rootfs, shm, volumes)."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(directory.rstrip("/") + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def write_containerd_config(machine: Machine, *, sandbox_image: str) -> str:
    """containerd's config: everything of its own under the machine's directory."""
    cni_conf_dir = Path(machine.dir) / "cni" / "net.d"
    cni_conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0", "name": "dtbed",
        "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": machine.pod_subnet}]],
                              "dataDir": f"{machine.dir}/cni/ipam"}}],
    }
    (cni_conf_dir / "10-dtbed.conflist").write_text(json.dumps(conflist, indent=2))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config = f"""version = 2
root = "{machine.dir}/containerd/root"
state = "{machine.dir}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{machine.socket}"

[ttrpc]
  address = "{machine.socket}.ttrpc"

[{cri}]
  sandbox_image = "{sandbox_image}"
  # Root here lacks CAP_SYS_RESOURCE: lowering a sandbox's oom_score_adj would be refused.
  restrict_oom_score_adj = true
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf_dir}"
"""
    path = Path(machine.dir) / "containerd.toml"
    path.write_text(config)
    return str(path)


def write_sshd(machine: Machine, *, authorized_keys: str) -> str:
    """An OpenSSH server of the machine on its node address, key-based, root only (the node
    agent needs root); its host key is new per bed. Returns the config's path."""
    ssh_dir = Path(machine.dir) / "ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    host_key = ssh_dir / "ssh_host_ed25519_key"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", machine.node_name, "-f", str(host_key)],
                       check=True, capture_output=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    # A home of the bed's own: a login over SSH then runs none of the machine's root shell
    # start-up files (bash reads ~/.bashrc for sshd's commands), and Ansible's remote
    # temporary files go with the bed.
    home = ssh_dir / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    config = ssh_dir / "sshd_config"
    config.write_text(f"""ListenAddress {machine.address}:22
HostKey {host_key}
PidFile {ssh_dir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
SetEnv HOME={home}
""")
    return str(config)


def host_key_line(machine: Machine) -> str:
    """The machine's known_hosts line."""
    public = (Path(machine.dir) / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{machine.address} {public[0]} {public[1]}"


def write_kubelet_config(machine: Machine, *, client_ca: str) -> str:
    """The KubeletConfiguration of this machine (JSON is YAML)."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # This machine kind runs cgroup v1 (hybrid); kubelet 1.35+ refuses it unless told.
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": machine.cgroup,
        "containerRuntimeEndpoint": machine.runtime_endpoint,
        "failSwapOn": False, "enforceNodeAllocatable": [], "localStorageCapacityIsolation": False,
        "port": KUBELET_PORT, "readOnlyPort": 0, "healthzPort": 0,
        "podLogsDir": f"{machine.dir}/pod-logs", "resolvConf": "", "maxPods": 250,
        "serializeImagePulls": False, "registerNode": True,
        # Disk use of the shared test machine is not this node's business.
        "evictionHard": {"memory.available": "1Mi"}, "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # kubectl exec and logs: the API server proves itself with its kubelet client certificate.
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": client_ca}},
        "authorization": {"mode": "AlwaysAllow"},
    }
    path = Path(machine.dir) / "kubelet.json"
    path.write_text(json.dumps(config, indent=2))
    return str(path)
