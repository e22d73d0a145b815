"""Commands in network namespaces, for the data plane.

Owns running a command in a network namespace (or in this process's own), with a timeout
and with secrets scrubbed from the error it raises; whether a namespace still exists; and
reading one's links, addresses and forwarding switches from the kernel without a process
(``snapshot``, over rtnetlink, from sockets and files the calling thread opens inside it and
reads back home: ``_opened_in``), with the link of a name and the MTU of the link holding an
address; the changes of links a new interface and a departed one need, asked of the kernel
the same way (``move_link``, ``raise_link``, ``delete_link``); the generation of its
nftables rules (``rules_generation``); and which namespace a path holds
(``namespace_identity``: its device and inode, which a new namespace there would not have).
Namespaces are given as a path (``/var/run/netns/x``, ``/proc/PID/ns/net``) or as an ``ip
netns`` name; ``None`` means the namespace this process runs in. Every failure is a
``WireGuardError``.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import os
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ansible_collections.sightline.dtservice.plugins.module_utils.rules import rtnetlink

__all__ = ["NETNS_DIR", "TIMEOUT", "Snapshot", "WireGuardError", "argv_in", "delete_link", "find_link",
           "move_link", "namespace_alive", "namespace_identity", "namespace_path", "raise_link", "rules_generation",
           "run", "snapshot", "underlay_mtu"]

NETNS_DIR = "/var/run/netns"
TIMEOUT = 60
_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
_RECEIVE_BYTES = 1 << 16
T = TypeVar("T")


class WireGuardError(RuntimeError):
    """A data-plane operation failed; the message is for a human and holds no secret."""


def namespace_path(netns: str) -> str:
    """The path of a namespace given by path or by ``ip netns`` name."""
    return netns if "/" in netns else os.path.join(NETNS_DIR, netns)


def namespace_alive(netns: str) -> bool:
    return os.path.exists(namespace_path(netns))


def namespace_identity(netns: str) -> tuple[int, int] | None:
    """The device and inode of the namespace at ``netns`` (None if there is none)."""
    try:
        status = os.stat(namespace_path(netns))
    except OSError:
        return None
    return status.st_dev, status.st_ino


def argv_in(netns: str | None, argv: list[str]) -> list[str]:
    """``argv`` made to run in ``netns``."""
    # nsenter --net switches only the network namespace: the temp file and the wireguard-go
    # sockets stay visible, unlike `ip netns exec` which also remounts /sys and /etc.
    if netns is None:
        return argv
    return ["nsenter", f"--net={namespace_path(netns)}", "--", *argv]


def run(
    argv: list[str],
    *,
    netns: str | None = None,
    check: bool = True,
    secrets: Sequence[str] = (),
    env: dict[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - subprocess.run's name
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``netns``; with ``check``, a non-zero exit raises, quoting its output
    with every one of ``secrets`` replaced."""
    full = argv_in(netns, argv)
    try:
        proc = subprocess.run(
            full,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WireGuardError(f"{' '.join(full)}: {exc}") from None
    if check and proc.returncode != 0:
        raise WireGuardError(
            f"{' '.join(full)} failed (exit {proc.returncode}): "
            f"{_redact(proc.stderr.strip() or proc.stdout.strip(), secrets)}"
        )
    return proc


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


@dataclass(frozen=True)
class Snapshot:
    """A namespace's links with their addresses (as ``ip -j addr show`` prints them) and, if
    they were asked for, its IP forwarding switches (4 and 6 -> on; a version the namespace
    lacks is left out)."""

    links: list[dict[str, Any]]
    forwarding: dict[int, bool]

    def link(self, name: str) -> dict[str, Any] | None:
        return next((link for link in self.links if link["ifname"] == name), None)


def _enter(netns: str) -> None:
    fd = os.open(namespace_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().setns(fd, _CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(fd)


def _opened_in(netns: str | None, open_them: Callable[[], T]) -> T:
    """``open_them()`` (sockets, files: nothing that waits) run by this thread from inside
    ``netns``, then back in its own namespace before anything else runs.

    What it opens stays bound to ``netns`` and is read from here. A thread started for each
    reading would cost a hand-over of the interpreter lock each way (several milliseconds
    while other threads of a pass are busy); this costs two system calls."""
    if netns is None:
        return open_them()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _enter(netns)
        try:
            return open_them()
        finally:
            if _libc().setns(home, _CLONE_NEWNET) != 0:
                # Never go on in another namespace: the next request of this thread would
                # leave from the pod. Our own namespace, held open, cannot refuse us.
                os.abort()
    finally:
        os.close(home)


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _route_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)


_SWITCHES = ((4, "/proc/sys/net/ipv4/ip_forward"), (6, "/proc/sys/net/ipv6/conf/all/forwarding"))


def _open_switches() -> list[tuple[int, Any]]:
    """The forwarding switches of the namespace this thread is in, opened (read later)."""
    opened = []
    for version, path in _SWITCHES:
        try:
            opened.append((version, open(path, encoding="ascii")))  # noqa: SIM115 - read and closed by the caller
        except OSError:
            continue
    return opened


def _read_links(sock: socket.socket) -> list[tuple[int, bytes]]:
    replies: list[tuple[int, bytes]] = []
    with sock:
        sock.settimeout(TIMEOUT)
        for sequence, kind in enumerate((rtnetlink.RTM_GETLINK, rtnetlink.RTM_GETADDR), start=1):
            sock.send(rtnetlink.dump_request(kind, sequence=sequence))
            done = False
            while not done:
                found, done = rtnetlink.messages(sock.recv(_RECEIVE_BYTES))
                replies.extend(found)
    return replies


def snapshot(netns: str | None, *, forwarding: bool = False) -> Snapshot:
    """The links and addresses of ``netns``, and with ``forwarding`` its forwarding switches
    (else none: opening them took half again as long as reading the links), asked of the
    kernel from this process (no ``ip`` run). Raises ``WireGuardError`` if it cannot be
    entered or read."""
    try:
        sock, switches = _opened_in(netns, lambda: (_route_socket(), _open_switches() if forwarding else []))
        read = {}
        for version, switch in switches:
            with switch:
                read[version] = switch.read().strip() == "1"
        replies = _read_links(sock)
    except OSError as error:
        raise WireGuardError(f"reading the links of {netns or 'this namespace'}: {error}") from None
    return Snapshot(links=rtnetlink.links_view(replies), forwarding=read)


def _reason(error: OSError) -> str:
    """What the kernel's refusal means, in words (``No such device``)."""
    return os.strerror(error.errno) if error.errno else str(error)


def _ask(sock: socket.socket, requests: list[bytes]) -> None:
    """Send each request (numbered from 1) and wait for the kernel's acknowledgement of it."""
    with sock:
        sock.settimeout(TIMEOUT)
        for sequence, request in enumerate(requests, start=1):
            sock.send(request)
            rtnetlink.acknowledge(sock.recv(_RECEIVE_BYTES), sequence=sequence)


def move_link(name: str, *, mtu: int, from_netns: str | None, to_netns: str) -> None:
    """Give link ``name`` of ``from_netns`` its ``mtu`` there, then move it into ``to_netns``."""
    try:
        target = os.open(namespace_path(to_netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _ask(_opened_in(from_netns, _route_socket), [
                rtnetlink.link_request(name=name, mtu=mtu, sequence=1),
                rtnetlink.link_request(name=name, netns_fd=target, sequence=2),
            ])
        finally:
            os.close(target)
    except OSError as error:
        raise WireGuardError(f"moving {name} from {from_netns or 'this namespace'} into {to_netns}: "
                             f"{_reason(error)}") from None


def raise_link(name: str, *, netns: str, address: str, forward: bool = False) -> None:
    """Give link ``name`` of ``netns`` its ``address`` and bring it up; with ``forward``,
    switch on the namespace's forwarding of the address's IP version too."""
    def open_them() -> tuple[socket.socket, int, Any]:
        sock = _route_socket()
        try:
            index = socket.if_nametoindex(name)
            switch = None if not forward else open(  # noqa: SIM115 - written and closed below
                dict(_SWITCHES)[ipaddress.ip_interface(address).version], "w", encoding="ascii")
        except OSError:
            sock.close()
            raise
        return sock, index, switch

    try:
        sock, index, switch = _opened_in(netns, open_them)
        try:
            _ask(sock, [rtnetlink.address_request(index=index, address=address, sequence=1),
                        rtnetlink.link_request(name=name, up=True, sequence=2)])
            if switch is not None:
                switch.write("1")
        finally:
            if switch is not None:
                switch.close()
    except OSError as error:
        raise WireGuardError(f"giving {name} in {netns} its address: {_reason(error)}") from None


def delete_link(name: str, netns: str | None) -> None:
    """Delete link ``name`` of ``netns``; raise ``WireGuardError`` if it cannot be deleted."""
    try:
        _ask(_opened_in(netns, _route_socket), [rtnetlink.delete_request(name=name, sequence=1)])
    except OSError as error:
        raise WireGuardError(f"deleting {name} in {netns or 'this namespace'}: {_reason(error)}") from None


def rules_generation(netns: str | None) -> int | None:
    """The generation of ``netns``'s nftables rules (``rtnetlink.generation``); None where
    it cannot be read (no namespace, no nf_tables in the kernel)."""
    try:
        sock = _opened_in(netns, lambda: socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, rtnetlink.NETLINK_NETFILTER))
        with sock:
            sock.settimeout(TIMEOUT)
            sock.send(rtnetlink.generation_request(sequence=1))
            return rtnetlink.generation(sock.recv(_RECEIVE_BYTES))
    except OSError:
        return None


def find_link(name: str, netns: str | None) -> dict | None:
    """The link ``name`` in ``netns``; None if there is none (or no namespace)."""
    if netns is not None and not namespace_alive(netns):
        return None
    try:
        return snapshot(netns).link(name)
    except WireGuardError:
        return None


def underlay_mtu(*, address: str, netns: str | None) -> int | None:
    """The MTU of the link holding ``address`` in ``netns`` (the node's underlay link, which
    WireGuard's packets leave by); None if no link there holds it (a NATed address, say)."""
    if netns is not None and not namespace_alive(netns):
        return None
    try:
        links = snapshot(netns).links
    except WireGuardError:
        return None
    for link in links:
        if any(info.get("local") == address for info in link.get("addr_info", [])):
            return link.get("mtu")
    return None
