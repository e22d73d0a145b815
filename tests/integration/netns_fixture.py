"""A throw-away underlay of network namespaces for data-plane tests (needs root).

Layout, every name prefixed ``dtwgtest-<tag>-`` (``tag`` random per run, so runs never
collide and everything can be found again for cleanup):

- ``ul``: the underlay, one bridge ``br0``;
- ``n0..nN``: "nodes", each with ``eth0`` = ``198.18.1.(10+i)/24`` on the bridge;
- ``p0..pN``: "pods", empty namespaces (loopback up) that receive the WireGuard links.

``Underlay.destroy()`` stops the wireguard-go processes of the interface names the test
registered (found by exact argv, signalled by pid), removes their control sockets and
deletes the namespaces. It is safe to call twice and after a partial build.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field

PREFIX = "dtwgtest-"
NETNS_DIR = "/var/run/netns"
SOCKET_DIR = "/var/run/wireguard"


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
    """PIDs whose argv is exactly ``wireguard-go NAME``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = [a.decode() for a in handle.read().split(b"\0") if a]
        except (OSError, UnicodeDecodeError):
            continue
        if len(args) == 2 and os.path.basename(args[0]) == "wireguard-go" and args[1] == name:
            pids.append(int(entry))
    return pids


@dataclass
class Underlay:
    nodes: int = 3
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    interfaces: set[str] = field(default_factory=set)
    created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{PREFIX}{self.tag}-{role}"

    def node(self, i: int) -> str:
        """Name of node i's namespace (the API also accepts names)."""
        return self.ns(f"n{i}")

    def pod(self, i: int) -> str:
        """Name of pod i's namespace."""
        return self.ns(f"p{i}")

    def pod_path(self, i: int) -> str:
        """Path of pod i's namespace, the form the test bed annotates pods with."""
        return os.path.join(NETNS_DIR, self.pod(i))

    @staticmethod
    def node_address(i: int) -> str:
        return f"198.18.1.{10 + i}"

    def ifname(self, role: str) -> str:
        """A machine-wide unique interface name (<= 15 chars), registered for cleanup."""
        name = f"dtwg{self.tag}{role}"
        assert len(name) <= 15
        self.interfaces.add(name)
        return name

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        in_ns(name, "ip", "link", "set", "lo", "up")

    def build(self) -> Underlay:
        ul = self.ns("ul")
        self._add_ns(ul)
        in_ns(ul, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(ul, "ip", "link", "set", "br0", "up")
        for i in range(self.nodes):
            self._add_ns(self.node(i))
            self._add_ns(self.pod(i))
            in_ns(
                ul,
                "ip",
                "link",
                "add",
                f"v{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.node(i),
            )
            in_ns(ul, "ip", "link", "set", f"v{i}", "master", "br0", "up")
            in_ns(
                self.node(i),
                "ip",
                "addr",
                "add",
                f"{self.node_address(i)}/24",
                "dev",
                "eth0",
            )
            in_ns(self.node(i), "ip", "link", "set", "eth0", "up")
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
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        self.created.clear()
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
        return forced
