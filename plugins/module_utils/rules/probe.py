"""A live WireGuard interface as one probe sees it, and what differs from the wanted one.

Owns, without touching the machine (standard library and ``rules`` only):

- the probe's reading: the WireGuard state as wireguard-go's UAPI (``parse_uapi``) or
  ``wg show dump`` (``parse_dump``, for kernel WireGuard) tell it, with each peer's latest
  handshake and bytes received and sent, and the private key both print dropped at once;
  with the link as ``ip -j addr`` shows it, the forwarding switches and the interface's TCP
  MSS clamp rules, one ``LiveInterface`` (``live_interface``);
- the diff: ``diff_interface`` says which peers to add, change or remove, which added peer
  replaces a removed one (a peer's new key: the same allowed IPs under another public key),
  whether the key or listen port differ, and which commands (argv lists) give the link its
  address, MTU, up state, forwarding and MSS clamp; endpoints compare by address, and a host
  name through the resolver the caller passes in (``wg`` keeps what a name resolved to).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import shlex
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import is_valid_key, public_key_of
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.wgconfig import Peer, split_endpoint

__all__ = [
    "Changes",
    "CLAMP_CHAINS",
    "IPTABLES",
    "IPTABLES_RESTORE",
    "LiveInterface",
    "LivePeer",
    "Resolve",
    "WireGuardState",
    "diff_interface",
    "endpoint_matches",
    "forwarding_sysctl",
    "is_clamp_of",
    "clamp_changes",
    "clamp_commands",
    "clamp_mss",
    "link_commands",
    "live_interface",
    "mangle_restore",
    "parse_dump",
    "parse_uapi",
    "peer_differs",
    "replacements",
]

# Host name and port -> the addresses the name resolves to (none if it does not).
Resolve = Callable[[str, int], Iterable[str]]


@dataclasses.dataclass(frozen=True)
class LivePeer:
    allowed_ips: list[str]
    endpoint: str | None
    keepalive: int
    latest_handshake: int
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class LiveInterface:
    """What one probe of an interface in a pod found; holds no private key."""

    public_key: str | None
    listen_port: int
    mtu: int
    up: bool
    addresses: frozenset
    forwarding: dict[int, bool]
    peers: dict[str, LivePeer]
    # The live MSS clamp rules of this interface, as ``iptables -S`` prints them.
    clamps: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class WireGuardState:
    """An interface's WireGuard side, as ``wg show dump`` or wireguard-go's UAPI tell it."""

    public_key: str | None
    listen_port: int
    peers: dict[str, LivePeer]


def parse_dump(dump: str) -> WireGuardState:
    """``wg show NAME dump``: the interface line (private key, public key, listen port,
    fwmark; the private key is dropped right here), then one line for each peer."""
    rows = [line.split("\t") for line in dump.splitlines() if line.strip()]
    _private_key, public_key, listen_port, _fwmark = rows[0]
    peers = {
        key: LivePeer(
            allowed_ips=[] if allowed == "(none)" else allowed.split(","),
            endpoint=None if endpoint == "(none)" else endpoint,
            keepalive=0 if keepalive == "off" else int(keepalive),
            latest_handshake=int(handshake),
            rx_bytes=int(rx),
            tx_bytes=int(tx),
        )
        for key, _psk, endpoint, allowed, handshake, rx, tx, keepalive in rows[1:]
    }
    return WireGuardState(public_key=public_key if is_valid_key(public_key) else None,
                          listen_port=int(listen_port), peers=peers)


def _base64_of_hex(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def parse_uapi(text: str) -> WireGuardState:
    """wireguard-go's answer to a UAPI ``get=1``: ``key=value`` lines, keys in hex, each peer
    starting at its ``public_key`` line, ending ``errno=0``. The interface's public key is
    derived from its private key, which goes no further."""
    public_key, listen_port = None, 0
    peers: dict[str, dict] = {}
    peer: dict | None = None
    for line in text.splitlines():
        key, _sep, value = line.partition("=")
        if key == "errno" and value != "0":
            raise ValueError(f"wireguard-go answered errno {value}")
        if key == "private_key":
            public_key = public_key_of(_base64_of_hex(value))
        elif key == "listen_port":
            listen_port = int(value)
        elif key == "public_key":
            peer = peers.setdefault(_base64_of_hex(value), {"allowed_ips": [], "endpoint": None, "keepalive": 0,
                                                            "latest_handshake": 0, "rx_bytes": 0, "tx_bytes": 0})
        elif peer is not None:
            if key == "allowed_ip":
                peer["allowed_ips"].append(value)
            elif key == "endpoint":
                peer["endpoint"] = value
            elif key in ("persistent_keepalive_interval", "last_handshake_time_sec", "rx_bytes", "tx_bytes"):
                field = {"persistent_keepalive_interval": "keepalive",
                         "last_handshake_time_sec": "latest_handshake"}.get(key, key)
                peer[field] = int(value)
    return WireGuardState(public_key=public_key, listen_port=listen_port,
                          peers={key: LivePeer(**fields) for key, fields in peers.items()})


def live_interface(link: dict[str, Any], *, wireguard: WireGuardState, forwarding: dict[int, bool],
                   rules: str) -> LiveInterface:
    """The interface ``link`` (as ``ip -j addr`` prints it), its WireGuard side, the
    namespace's forwarding switches and its mangle rules (``iptables -S``; the clamps of
    this interface are picked out)."""
    addresses = frozenset(
        ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
        for info in link.get("addr_info", [])
        if info.get("scope") == "global"
    )
    return LiveInterface(
        public_key=wireguard.public_key,
        listen_port=wireguard.listen_port,
        mtu=link.get("mtu", 0),
        up="UP" in link.get("flags", []),
        addresses=addresses,
        forwarding=dict(forwarding),
        peers=wireguard.peers,
        clamps=tuple(line.strip() for line in rules.splitlines() if is_clamp_of(line.strip(), link["ifname"])),
    )


# ------------------------------------------------------------------------- diffing


def _networks(nets: Sequence[str]) -> set[str]:
    return {str(ipaddress.ip_network(n, strict=False)) for n in nets}


def endpoint_matches(wanted: str, live: str | None, *, resolve: Resolve) -> bool:
    """True if the endpoint ``wg`` reports (``live``) is the ``wanted`` one."""
    if live is None:
        return False
    host, port = split_endpoint(wanted)
    live_host, live_port = split_endpoint(live)
    if port != live_port:
        return False
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(live_host)
    except ValueError:
        pass
    # A DNS name: wg stores what it resolved to, so compare against the resolution.
    return any(ipaddress.ip_address(address) == ipaddress.ip_address(live_host) for address in resolve(host, port))


def peer_differs(peer: Peer, live: LivePeer, *, resolve: Resolve) -> bool:
    """True if the live peer's allowed IPs, endpoint or keepalive are not the wanted ones."""
    if _networks(peer.allowed_ips) != _networks(live.allowed_ips):
        return True
    # No endpoint wanted means the peer roams to us: whatever wg learned is right.
    if peer.endpoint is not None and not endpoint_matches(peer.endpoint, live.endpoint, resolve=resolve):
        return True
    return (peer.persistent_keepalive or 0) != live.keepalive


def replacements(*, added: Sequence[Peer], removed: dict[str, LivePeer]) -> dict[str, str]:
    """Each added peer that takes over a removed one: the same allowed IPs under a new key,
    which is how a peer's key rotation shows on the other end of its tunnels."""
    replacing: dict[str, str] = {}
    for peer in added:
        nets = _networks(peer.allowed_ips)
        old = next((key for key, live in removed.items()
                    if nets and _networks(live.allowed_ips) == nets and key not in replacing.values()), None)
        if old is not None:
            replacing[peer.public_key] = old
    return replacing


def forwarding_sysctl(address: str) -> str:
    """The sysctl that switches forwarding on for the IP version of ``address``."""
    return "net.ipv4.ip_forward" if ipaddress.ip_interface(address).version == 4 else "net.ipv6.conf.all.forwarding"


# The pod's mangle chains holding an interface's clamps: POSTROUTING sees the SYNs the pod sends
# into the interface and those a hub forwards between its clients; PREROUTING the SYNs that come
# out of it, so the pod's own TCP sends segments the far side's underlay carries too.
CLAMP_CHAINS = {"POSTROUTING": "-o", "PREROUTING": "-i"}
IPTABLES = ["iptables", "-w", "5", "-t", "mangle"]
IPTABLES_RESTORE = ["iptables-restore", "-w", "5", "--noflush"]
# WireGuard's outer headers: IP (20 for IPv4, 40 for IPv6), UDP 8, WireGuard's own 32.
_WG_OVERHEAD = {4: 60, 6: 80}
_WG_PADDING = 16
# An IPv4 packet's IP and TCP headers, which the MSS leaves out.
_TCP_IP_HEADERS = 40


def clamp_mss(*, mtu: int, underlay_mtu: int | None, underlay_version: int = 4) -> int:
    """The MSS a pod's TCP SYNs through the interface are clamped to: what fits the interface's
    MTU, and inside WireGuard's packets on an underlay link whose MTU is smaller. Each peer
    clamps with its own underlay link, so the smaller one wins on both sides of a connection."""
    fits = mtu
    if underlay_mtu is not None:
        # WireGuard pads what it encrypts to a multiple of 16 bytes (never past the interface's
        # MTU), so a packet fits the underlay link only at a multiple of 16 below its room.
        fits = min(mtu, (underlay_mtu - _WG_OVERHEAD[underlay_version]) // _WG_PADDING * _WG_PADDING)
    return max(fits - _TCP_IP_HEADERS, 536)


def is_clamp_of(rule: str, name: str) -> bool:
    """True if ``rule`` (as ``iptables -S`` prints it) is one of the interface's clamps."""
    return "TCPMSS" in rule.split() and any(f" {flag} {name} " in f" {rule} " for flag in CLAMP_CHAINS.values())


def clamp_changes(live: Sequence[str], *, name: str, mss: int | None) -> list[str]:
    """The rules (``-D ...``, then ``-A ...``, as ``iptables-restore`` reads them) that leave
    exactly the interface's clamps to ``mss`` (none for ``mss=None``); ``live`` is what
    ``iptables -S`` prints of its clamp rules. None when they are so already."""
    wanted = [f"-A {chain} {flag} {name} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss {mss}"
              for chain, flag in CLAMP_CHAINS.items()] if mss is not None else []
    if sorted(live) == sorted(wanted):
        return []
    return [f"-D {rule.split(maxsplit=1)[1]}" for rule in live] + wanted


def clamp_commands(live: Sequence[str], *, name: str, mss: int | None) -> list[list[str]]:
    """``clamp_changes`` as one iptables command each."""
    return [[*IPTABLES, *shlex.split(rule)] for rule in clamp_changes(live, name=name, mss=mss)]


def mangle_restore(rules: Sequence[str]) -> str:
    """What ``IPTABLES_RESTORE`` reads to make ``rules`` in the mangle table, all or none."""
    return "".join(f"{line}\n" for line in ["*mangle", *rules, "COMMIT"])


def link_commands(live: LiveInterface, *, name: str, address: str, mtu: int, forward: bool,
                  mss: int | None = None) -> list[list[str]]:
    """The commands that give the link its address, MTU, up state, forwarding and MSS clamp."""
    wanted = ipaddress.ip_interface(address)
    commands = []
    if wanted not in live.addresses:
        commands.append(["ip", "addr", "add", str(wanted), "dev", name])
    # Addresses we did not ask for go: a reallocated address must not linger.
    commands += [["ip", "addr", "del", str(a), "dev", name] for a in sorted(live.addresses - {wanted}, key=str)]
    if live.mtu != mtu:
        commands.append(["ip", "link", "set", "dev", name, "mtu", str(mtu)])
    if not live.up:
        commands.append(["ip", "link", "set", "dev", name, "up"])
    if forward and not live.forwarding.get(wanted.version, False):
        commands.append(["sysctl", "-q", "-w", f"{forwarding_sysctl(address)}=1"])
    return commands + clamp_commands(live.clamps, name=name, mss=mss)


@dataclasses.dataclass(frozen=True)
class Changes:
    """What must change on a live interface to make it the wanted one."""

    peers_added: list[str]
    peers_removed: list[str]
    peers_updated: list[str]
    key: bool
    listen_port: bool
    link_commands: list[list[str]]
    # Added peer -> the removed peer it takes over from (a key rotated on the other side).
    replacing: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def wireguard(self) -> bool:
        """Whether the WireGuard configuration (key, port or peers) changes."""
        return bool(self.key or self.listen_port or self.peers_added or self.peers_removed or self.peers_updated)

    @property
    def changed(self) -> bool:
        return self.wireguard or bool(self.link_commands)


def diff_interface(
    live: LiveInterface,
    *,
    name: str,
    address: str,
    mtu: int,
    listen_port: int | None,
    public_key: str,
    peers: Sequence[Peer],
    forward: bool,
    resolve: Resolve,
    mss: int | None = None,
) -> Changes:
    """Compare a live interface with the wanted one.

    Peers added and updated are in the order of ``peers``, removed ones sorted;
    ``listen_port=None`` accepts whatever port the interface has.
    """
    wanted = {p.public_key: p for p in peers}
    added = [k for k in wanted if k not in live.peers]
    removed = sorted(k for k in live.peers if k not in wanted)
    return Changes(
        peers_added=added,
        peers_removed=removed,
        replacing=replacements(added=[wanted[k] for k in added], removed={k: live.peers[k] for k in removed}),
        peers_updated=[
            k for k, p in wanted.items() if k in live.peers and peer_differs(p, live.peers[k], resolve=resolve)
        ],
        key=live.public_key != public_key,
        listen_port=listen_port is not None and live.listen_port != listen_port,
        link_commands=link_commands(live, name=name, address=address, mtu=mtu, forward=forward, mss=mss),
    )
