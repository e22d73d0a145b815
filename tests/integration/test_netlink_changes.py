"""The link changes data/netns.py asks of the kernel over rtnetlink (a new interface's move,
address and state, a departed one's deletion), on real namespaces and a real veth link, each
compared with what `ip` prints afterwards; and the kernel's refusals as errors. Also a
wireguard-go that cannot make its link: the error says why, at once, and nothing is left.

Needs root. Two namespaces of its own (`ip netns add`), deleted with whatever is in them
also when a test fails; no bed, no pod.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_fixture import in_ns, sh  # noqa: I001

from ansible_collections.sightline.dtservice.plugins.module_utils.data import netns, wggo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]


def ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return sh("ip", *argv)


def sysctl(namespace: str, *argv: str) -> str:
    return in_ns(namespace, "sysctl", *argv).stdout.strip()


def link_in(namespace: str, name: str) -> dict | None:
    return next((link for link in json.loads(ip("-n", namespace, "-j", "addr", "show").stdout)
                 if link["ifname"] == name), None)


@pytest.fixture
def two_namespaces():
    tag = secrets.token_hex(3)
    names = (f"dtnl-{tag}-a", f"dtnl-{tag}-b")
    try:
        for name in names:
            ip("netns", "add", name)
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_a_link_is_moved_addressed_raised_and_deleted_as_ip_would_do_it(two_namespaces):
    node, pod = two_namespaces
    link = "dtnl0"
    ip("-n", node, "link", "add", link, "type", "veth", "peer", "name", "dtnl1")
    home = os.readlink("/proc/thread-self/ns/net")

    netns.move_link(link, mtu=1380, from_netns=node, to_netns=pod)
    assert link_in(node, link) is None and link_in(node, "dtnl1") is not None
    moved = link_in(pod, link)
    assert moved is not None and moved["mtu"] == 1380 and "UP" not in moved["flags"]

    sysctl(pod, "-w", "net.ipv4.ip_forward=0")  # a new namespace copies the host's
    netns.raise_link(link, netns=pod, address="100.96.253.1/24", forward=True)
    raised = link_in(pod, link)
    assert raised is not None and "UP" in raised["flags"]
    assert [(a["family"], a["local"], a["prefixlen"]) for a in raised["addr_info"]] == [("inet", "100.96.253.1", 24)]
    assert sysctl(pod, "-n", "net.ipv4.ip_forward") == "1"
    assert netns.snapshot(pod).link(link)["addr_info"][0]["local"] == "100.96.253.1", "this process reads it too"

    netns.delete_link(link, pod)
    assert link_in(pod, link) is None
    assert os.readlink("/proc/thread-self/ns/net") == home, "every change was asked from this thread's own namespace"


def test_an_ipv6_address_is_added_without_touching_forwarding(two_namespaces):
    _node, pod = two_namespaces
    if not os.path.exists("/proc/sys/net/ipv6"):
        pytest.skip("no IPv6 in this kernel")
    ip("-n", pod, "link", "add", "dtnl6", "type", "veth", "peer", "name", "dtnl7")
    switches = {name: sysctl(pod, "-n", name) for name in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")}
    netns.raise_link("dtnl6", netns=pod, address="fd00:dead::2/64")
    raised = link_in(pod, "dtnl6")
    assert raised is not None and "UP" in raised["flags"]
    assert ("inet6", "fd00:dead::2", 64) in [(a["family"], a["local"], a["prefixlen"]) for a in raised["addr_info"]]
    assert {name: sysctl(pod, "-n", name) for name in switches} == switches


def test_the_kernels_refusals_are_errors_that_name_the_link(two_namespaces):
    node, pod = two_namespaces
    with pytest.raises(netns.WireGuardError, match=r"moving dtnlx from .* No such device"):
        netns.move_link("dtnlx", mtu=1380, from_netns=node, to_netns=pod)
    with pytest.raises(netns.WireGuardError, match="giving dtnlx in .* its address"):
        netns.raise_link("dtnlx", netns=pod, address="100.96.253.1/24")
    with pytest.raises(netns.WireGuardError, match="deleting dtnlx in"):
        netns.delete_link("dtnlx", pod)

    ip("-n", pod, "link", "add", "dtnl2", "type", "veth", "peer", "name", "dtnl3")
    netns.raise_link("dtnl2", netns=pod, address="100.96.253.2/24")
    with pytest.raises(netns.WireGuardError, match="File exists"):
        netns.raise_link("dtnl2", netns=pod, address="100.96.253.2/24")
    with pytest.raises(netns.WireGuardError, match="moving dtnl2"):
        netns.move_link("dtnl2", mtu=1380, from_netns=pod, to_netns="/var/run/netns/dtnl-not-there")
    assert link_in(pod, "dtnl2") is not None, "a refused move leaves the link where it was"


def test_a_wireguard_go_that_cannot_make_its_link_is_an_error_saying_why_at_once(two_namespaces):
    """wireguard-go starts in the foreground, and its failure is seen as it exits, not after
    a wait for its control socket; and what it logged says why."""
    node, pod = two_namespaces
    taken = f"dtnl{secrets.token_hex(4)}"
    ip("-n", node, "link", "add", taken, "type", "veth", "peer", "name", "dtnl9")  # not a TUN: wireguard-go fails
    started = time.monotonic()
    with pytest.raises(netns.WireGuardError, match=f"wireguard-go for {taken} exited \\(1\\): .*TUN"):
        wggo.create_link(taken, node, pod, 1380)
    assert time.monotonic() - started < 5, "the failure was seen as it happened"
    assert wggo.wireguard_go_pids(taken) == []
    assert not wggo.control_socket_exists(taken)
    with pytest.raises(netns.WireGuardError, match="wireguard-go for .* exited .*nsenter.*dtnl-not-there"):
        wggo.create_link(taken, "/var/run/netns/dtnl-not-there", pod, 1380)
