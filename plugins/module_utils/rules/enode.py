"""Ethereum enode URLs and dtService overlay addresses. Pure, no I/O.

Owns the one rewrite the seed's Ethereum example asks for: an enode URL
(``enode://<128 hex node id>@<host>:<tcp port>[?discport=<udp port>]``) keeps its node id,
port and query while its host becomes the pod's dtService overlay address, so peers on other
federation nodes reach the boot node over the WireGuard network. ``own_address`` finds that
overlay address in a dtService object (the ``peers`` entry the object records for itself).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.rules.plan import self_entry

SCHEME = "enode://"
NODE_ID_HEX_DIGITS = 128  # the uncompressed secp256k1 public key without its 0x04 prefix
_NODE_ID = re.compile(r"[0-9a-fA-F]{128}")
_DIGITS = re.compile(r"[0-9]+")


class EnodeError(ValueError):
    """An enode URL or an overlay address that cannot be used; the message says what is wrong."""


def _port(text: str, *, what: str, enode: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise EnodeError(f"enode {enode!r}: {what} {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise EnodeError(f"enode {enode!r}: {what} {port} is outside 1-65535")
    return port


def _ipv4(address: Any) -> str:
    if not isinstance(address, str):
        raise EnodeError(f"overlay address {address!r} is not a string holding an IPv4 address")
    try:
        return str(ipaddress.IPv4Address(address.strip()))
    except ValueError:
        raise EnodeError(f"overlay address {address!r} is not an IPv4 address "
                         "(a dtService peers key such as 100.96.0.1, without a prefix length)") from None


def parse_enode(enode: Any) -> dict[str, Any]:
    """Split an enode URL into ``node_id``, ``host``, ``port`` and ``query`` (without ``?``).

    Surrounding whitespace and one pair of double quotes (as ``geth attach --exec
    admin.nodeInfo.enode`` prints it, and as the seed shows it) are accepted; ``quoted`` says
    whether they were there.
    """
    if not isinstance(enode, str):
        raise EnodeError(f"enode {enode!r} is not a string")
    text = enode.strip()
    quoted = len(text) >= 2 and text[0] == text[-1] == '"'
    if quoted:
        text = text[1:-1]
    if not text.startswith(SCHEME):
        scheme = text.split("://", 1)[0] + "://" if "://" in text else "none"
        raise EnodeError(f"enode {enode!r}: scheme must be {SCHEME!r}, found {scheme!r}")
    rest = text[len(SCHEME):]
    node_id, at, location = rest.partition("@")
    if not at:
        raise EnodeError(f"enode {enode!r}: no '@' between the node id and the host")
    if not _NODE_ID.fullmatch(node_id):
        not_hex = "" if re.fullmatch(r"[0-9a-fA-F]*", node_id) else " (not all hex)"
        raise EnodeError(f"enode {enode!r}: node id must be {NODE_ID_HEX_DIGITS} hex digits, "
                         f"found {len(node_id)} characters{not_hex}")
    location, _sep, query = location.partition("?")
    if location.startswith("["):  # an IPv6 host: [addr]:port
        host, bracket, port_part = location[1:].partition("]")
        if not bracket:
            raise EnodeError(f"enode {enode!r}: IPv6 host without a closing ']'")
        if not port_part.startswith(":"):
            raise EnodeError(f"enode {enode!r}: missing ':<port>' after the host")
        port_text = port_part[1:]
    else:
        host, colon, port_text = location.rpartition(":")
        if not colon:
            raise EnodeError(f"enode {enode!r}: missing ':<port>' after the host {location!r}")
    if not host:
        raise EnodeError(f"enode {enode!r}: the host is empty")
    port = _port(port_text, what="port", enode=enode)
    for item in filter(None, query.split("&")):
        key, _sep, value = item.partition("=")
        if key == "discport":
            _port(value, what="discport", enode=enode)
    return {"node_id": node_id, "host": host, "port": port, "query": query, "quoted": quoted}


def rewrite_enode(enode: Any, address: Any) -> str:
    """The enode with its host replaced by the overlay IPv4 ``address``; node id, port and
    query (``?discport=``) are kept, and so are the surrounding quotes if it had them.

    >>> rewrite_enode("enode://" + "ab" * 64 + "@10.1.111.77:30303", "100.96.0.1")[-18:]
    '@100.96.0.1:30303'
    """
    parts = parse_enode(enode)
    new_host = _ipv4(address)
    url = f"{SCHEME}{parts['node_id']}@{new_host}:{parts['port']}"
    if parts["query"]:
        url += "?" + parts["query"]
    return f'"{url}"' if parts["quoted"] else url


def own_address(service: Any) -> str:
    """The overlay address a dtService object records for its own pod: the server entry on
    the server, the client's own entry on a client (``plan.self_entry``)."""
    if not isinstance(service, Mapping) or not isinstance(service.get("metadata"), Mapping) \
            or not service["metadata"].get("uid"):
        raise EnodeError("a dtService object (a dict with metadata.uid, as read from the API server) is needed, "
                         f"got {type(service).__name__}")
    name = service["metadata"].get("name", "?")
    recorded = self_entry(service)
    if recorded is None:
        raise EnodeError(f"dtService {name!r} has no peers entry of its own yet "
                         f"(status: {service.get('status') or 'none'}); wait for Status Connected")
    return recorded[0]
