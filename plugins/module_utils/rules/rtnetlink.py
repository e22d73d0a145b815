"""The kernel's answer about a namespace's links and addresses, the generation of its
nftables rules, and the few changes of links a new interface needs, without a process.

Owns, without touching the machine (standard library only):

- the two dump requests (``RTM_GETLINK``, ``RTM_GETADDR``) a NETLINK_ROUTE socket is sent,
  and the parsing of the messages it answers with (``messages``, raising ``NetlinkError``
  on an error message);
- ``links_view``: links and addresses in the shape ``ip -j addr show`` prints (``ifname``,
  ``mtu``, ``flags``, ``addr_info`` with ``family``, ``local``, ``prefixlen``, ``scope``), so
  that what reads ``ip``'s answer reads this one unchanged;
- the changes ``ip`` would ask for a new interface and a departed one, each acknowledged by
  the kernel (``acknowledge``): a link's MTU, namespace or state up (``link_request``, by
  name), an address added (``address_request``), a link deleted (``delete_request``);
- ``generation_request`` and ``generation``: nf_tables' ``NFT_MSG_GETGEN``, sent on a
  NETLINK_NETFILTER socket, and the number it answers with. The kernel adds one to it at
  every change committed to the namespace's nftables rules (what ``iptables`` of the
  nf_tables variant writes), and listing them changes nothing: the same number means the
  same rules.

Only the fields the project reads are decoded. A pass reads the links of every pod and node
namespace it touches; a process start for each costs more than all of this (and a first
deploy of 100 nodes ran 200 ``ip`` processes to move, address and raise its links).
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from typing import Any

__all__ = ["NETLINK_NETFILTER", "RTM_GETADDR", "RTM_GETLINK", "NetlinkError", "acknowledge", "address_request",
           "delete_request", "dump_request", "generation", "generation_request", "link_request", "links_view",
           "messages"]

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 17, 18, 20, 22
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x200, 0x400
IFLA_IFNAME, IFLA_MTU, IFLA_NET_NS_FD = 3, 4, 28
IFF_UP = 0x1
IFA_ADDRESS, IFA_LOCAL = 1, 2
_LINK_ATTRIBUTES, _ADDRESS_ATTRIBUTES = frozenset({IFLA_IFNAME, IFLA_MTU}), frozenset({IFA_ADDRESS, IFA_LOCAL})
NETLINK_NETFILTER = 12
_NFTABLES = 10 << 8  # NFNL_SUBSYS_NFTABLES, in a message type's high byte
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = _NFTABLES | 15, _NFTABLES | 16
NFTA_GEN_ID = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_LINK = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_ADDRESS = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, index
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, resource id

# The interface flags ``ip`` names, in its order; the project reads "UP".
_FLAGS = (("LOOPBACK", 0x8), ("BROADCAST", 0x2), ("POINTOPOINT", 0x10), ("MULTICAST", 0x1000),
          ("NOARP", 0x80), ("UP", 0x1), ("LOWER_UP", 0x10000))
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
_FAMILIES = {AF_INET: "inet", AF_INET6: "inet6"}


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


def _align(length: int) -> int:
    return (length + 3) & ~3


def dump_request(kind: int, *, sequence: int) -> bytes:
    """A request for every link (``RTM_GETLINK``) or every address (``RTM_GETADDR``)."""
    body = _LINK.pack(AF_UNSPEC, 0, 0, 0, 0) if kind == RTM_GETLINK else _ADDRESS.pack(AF_UNSPEC, 0, 0, 0, 0)
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + body


def _attribute(kind: int, value: bytes) -> bytes:
    return _ATTRIBUTE.pack(_ATTRIBUTE.size + len(value), kind) + value + b"\0" * (_align(len(value)) - len(value))


def _acknowledged(kind: int, body: bytes, *, sequence: int, flags: int = 0) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, sequence, 0) + body


def link_request(*, name: str, sequence: int, mtu: int | None = None, netns_fd: int | None = None,
                 up: bool = False) -> bytes:
    """A change of link ``name`` (``ip link set dev NAME``): its ``mtu``, its namespace (the
    one open as ``netns_fd`` in the sending process) or its state ``up``.

    The kernel moves a link before it applies the rest of the same request: a change meant
    for the namespace the link leaves goes in a request of its own."""
    attributes = _attribute(IFLA_IFNAME, name.encode() + b"\0")
    if mtu is not None:
        attributes += _attribute(IFLA_MTU, struct.pack("=I", mtu))
    if netns_fd is not None:
        attributes += _attribute(IFLA_NET_NS_FD, struct.pack("=i", netns_fd))
    flags = IFF_UP if up else 0
    return _acknowledged(RTM_NEWLINK, _LINK.pack(AF_UNSPEC, 0, 0, flags, flags) + attributes, sequence=sequence)


def address_request(*, index: int, address: str, sequence: int) -> bytes:
    """``address`` (``10.0.0.1/24``, ``fd00::1/64``) added to the link of ``index`` (``ip
    address add``: refused if the link has it already)."""
    interface = ipaddress.ip_interface(address)
    family = AF_INET if interface.version == 4 else AF_INET6
    raw = interface.ip.packed
    body = (_ADDRESS.pack(family, interface.network.prefixlen, 0, 0, index)
            + _attribute(IFA_LOCAL, raw) + _attribute(IFA_ADDRESS, raw))
    return _acknowledged(RTM_NEWADDR, body, sequence=sequence, flags=NLM_F_CREATE | NLM_F_EXCL)


def delete_request(*, name: str, sequence: int) -> bytes:
    """Link ``name`` deleted (``ip link del dev NAME``)."""
    body = _LINK.pack(AF_UNSPEC, 0, 0, 0, 0) + _attribute(IFLA_IFNAME, name.encode() + b"\0")
    return _acknowledged(RTM_DELLINK, body, sequence=sequence)


def _raise_error(payload: bytes) -> None:
    (error,) = struct.unpack_from("=i", payload)
    if error:
        raise NetlinkError(-error, f"netlink: {errno.errorcode.get(-error, -error)}")


def acknowledge(data: bytes, *, sequence: int) -> None:
    """Return if ``data`` holds the kernel's acknowledgement of request ``sequence``; raise
    ``NetlinkError`` with the kernel's error if it refused it, or if no answer to it is there."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, answered, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if kind == NLMSG_ERROR and answered == sequence:
            _raise_error(data[offset + _HEADER.size:offset + length])
            return
        offset += _align(length)
    raise NetlinkError(f"no answer to request {sequence} in the kernel's")


def generation_request(*, sequence: int) -> bytes:
    """The request for the namespace's nftables generation (a NETLINK_NETFILTER socket's)."""
    body = _NFGEN.pack(AF_UNSPEC, 0, 0)
    return _HEADER.pack(_HEADER.size + len(body), NFT_MSG_GETGEN, NLM_F_REQUEST, sequence, 0) + body


def generation(data: bytes) -> int:
    """The generation in the answer to ``generation_request``."""
    for kind, payload in messages(data)[0]:
        if kind == NFT_MSG_NEWGEN:
            raw = _attributes(payload, _NFGEN.size, frozenset({NFTA_GEN_ID})).get(NFTA_GEN_ID, b"")
            if len(raw) == 4:
                return struct.unpack(">I", raw)[0]
    raise NetlinkError("no nftables generation in the kernel's answer")


def messages(data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """The (type, payload) of each message in one read, and whether the dump ended there."""
    found: list[tuple[int, bytes]] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _sequence, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            raise NetlinkError(f"a netlink message of {length} bytes")
        payload = data[offset + _HEADER.size:offset + length]
        offset += _align(length)
        if kind == NLMSG_DONE:
            return found, True
        if kind == NLMSG_ERROR:
            _raise_error(payload)
        elif kind != NLMSG_NOOP:
            found.append((kind, payload))
    return found, False


def _attributes(data: bytes, offset: int, wanted: frozenset[int]) -> dict[int, bytes]:
    """The ``wanted`` attributes from ``offset`` on (the first of each type); the walk ends
    once all are found: a link's message carries some fifty, its name and MTU come first."""
    found: dict[int, bytes] = {}
    while offset + _ATTRIBUTE.size <= len(data) and len(found) < len(wanted):
        length, kind = _ATTRIBUTE.unpack_from(data, offset)
        if length < _ATTRIBUTE.size:
            break
        kind &= 0x3FFF
        if kind in wanted and kind not in found:
            found[kind] = data[offset + _ATTRIBUTE.size:offset + length]
        offset += _align(length)
    return found


def links_view(replies: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """The links and addresses of ``replies`` (the messages of one link and one address
    dump), as ``ip -j addr show`` prints them."""
    links: dict[int, dict[str, Any]] = {}
    for kind, payload in replies:
        if kind != RTM_NEWLINK:
            continue
        _family, _type, index, flags, _change = _LINK.unpack_from(payload)
        attributes = _attributes(payload, _LINK.size, _LINK_ATTRIBUTES)
        name = attributes.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
        mtu = struct.unpack("=I", attributes[IFLA_MTU])[0] if len(attributes.get(IFLA_MTU, b"")) == 4 else 0
        links[index] = {"ifindex": index, "ifname": name, "mtu": mtu,
                        "flags": [label for label, bit in _FLAGS if flags & bit], "addr_info": []}
    for kind, payload in replies:
        if kind != RTM_NEWADDR:
            continue
        family, prefixlen, _flags, scope, index = _ADDRESS.unpack_from(payload)
        attributes = _attributes(payload, _ADDRESS.size, _ADDRESS_ATTRIBUTES)
        raw = attributes.get(IFA_LOCAL) or attributes.get(IFA_ADDRESS)
        if index not in links or family not in _FAMILIES or raw is None:
            continue
        links[index]["addr_info"].append({"family": _FAMILIES[family], "local": str(ipaddress.ip_address(raw)),
                                          "prefixlen": prefixlen, "scope": _SCOPES.get(scope, str(scope))})
    return [links[index] for index in sorted(links)]
