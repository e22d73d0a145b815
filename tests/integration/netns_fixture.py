"""Nodes and pods for data-plane tests of wireguard.py (needs root): a real test bed.

``Underlay`` starts a local federation of its own (``tools/testbed``, prefix
``dtwgtest-<tag>-``, ``tag`` random per run): node i is the bed's ``nodeI`` (its network
namespace holds ``198.18.0.(10+i)`` on the underlay bridge) and pod i a pod ``wgI`` that
kubelet runs on that node, whose network namespace (made by containerd and CNI) is found
through the CRI. ``Underlay.destroy()`` stops the wireguard-go processes of the interface
names the test registered (found by exact argv, signalled by pid), removes their control
sockets and stops the bed. It is safe to call twice and after a partial build.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "dtwgtest-"
NETNS_DIR = "/var/run/netns"
SOCKET_DIR = "/var/run/wireguard"
TESTBED = Path(__file__).resolve().parents[2] / "tools" / "testbed"


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output, raise with stderr on failure."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def in_ns(netns: str, *argv: str, check: bool = True, timeout: float = 30):
    """Run a command inside a named network namespace."""
    return sh("ip", "netns", "exec", netns, *argv, check=check, timeout=timeout)


def wireguard_go_pids(name: str) -> list[int]:
    """PIDs of wireguard-go serving ``NAME`` (argv ``wireguard-go [--foreground] NAME``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = [a.decode() for a in handle.read().split(b"\0") if a]
        except (OSError, UnicodeDecodeError):
            continue
        if args and os.path.basename(args[0]) == "wireguard-go" and args[1:] in ([name], ["--foreground", name]):
            pids.append(int(entry))
    return pids


@dataclass
class Underlay:
    nodes: int = 3
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    interfaces: set[str] = field(default_factory=set)
    bed: object | None = None
    pods: dict[int, str] = field(default_factory=dict)
    forwarding: dict[int, str] = field(default_factory=dict)

    def node(self, i: int) -> str:
        """Name of node i's network namespace (the API also accepts names)."""
        return self.bed.node(f"node{i}").netns

    def pod(self, i: int) -> str:
        """Name of pod i's network namespace, as containerd made it."""
        return self.pods[i]

    def pod_path(self, i: int) -> str:
        """Path of pod i's network namespace, the form the agent passes."""
        return os.path.join(NETNS_DIR, self.pod(i))

    def node_address(self, i: int) -> str:
        return self.bed.node(f"node{i}").address

    def ifname(self, role: str) -> str:
        """A machine-wide unique interface name (<= 15 chars), registered for cleanup."""
        name = f"dtwg{self.tag}{role}"
        assert len(name) <= 15
        self.interfaces.add(name)
        return name

    def build(self, directory: str) -> Underlay:
        if str(TESTBED) not in sys.path:
            sys.path.insert(0, str(TESTBED))
        from testbed import Testbed

        self.bed = Testbed(directory, prefix=f"{PREFIX}{self.tag}-")
        self.bed.start(nodes=self.nodes)
        for i in range(self.nodes):
            self.pods[i] = self.bed.create_pod(f"node{i}", f"wg{i}")
        # The underlay itself must work before WireGuard is blamed for anything.
        for i in range(1, self.nodes):
            in_ns(self.node(i), "ping", "-c", "1", "-W", "2", self.node_address(0))
        return self

    def destroy(self) -> list[str]:
        """Remove everything this underlay and its registered interfaces left; returns
        a list of what had to be forced (wireguard-go processes killed)."""
        forced = []
        for name in sorted(self.interfaces):
            for pid in wireguard_go_pids(name):
                forced.append(f"wireguard-go {name} pid {pid}")
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for name in sorted(self.interfaces):
            while wireguard_go_pids(name) and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in wireguard_go_pids(name):
                os.kill(pid, signal.SIGKILL)
            try:
                os.unlink(os.path.join(SOCKET_DIR, f"{name}.sock"))
            except FileNotFoundError:
                pass
        if self.bed is not None:
            self.bed.stop()
        return forced
