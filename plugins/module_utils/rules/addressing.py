"""Pure allocation rules for dtService networks.

This module owns every "which number does this thing get" decision of the project:

- network subnets carved from a dtDomain's address pool (``allocate_subnet``);
- overlay addresses inside a network: the server's ``.1`` (``server_address``) and the
  lowest free host for clients (``lowest_free_host``, ``claim_address``);
- per-network UDP listen ports from a node's port range (``allocate_port``).

The names derived from Kubernetes identities (peer ids, labels, interface names) are the
contract's (``contract.py``).

It does no I/O and imports nothing outside the standard library, so the same rules run
inside Ansible modules, lookup plugins, the reconciler daemon and plain unit tests. The
callers own the tables (read from, and written back to, Kubernetes under an optimistic
lock); these functions only decide, deterministically, from the table they are given.

Failures raise ``AllocationError`` subclasses whose ``reason`` is the CamelCase word the
provisioner writes into a dtService ``status``, and whose message is meant for a human.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status

__all__ = [
    "AllocationError",
    "InvalidInput",
    "PoolExhausted",
    "PortsExhausted",
    "SubnetExhausted",
    "allocate_port",
    "allocate_subnet",
    "claim_address",
    "is_client_address",
    "lowest_free_host",
    "server_address",
]

# /31 and /32 have no network/broadcast pair and /30 is the smallest subnet that still
# has room for the server plus one client, so nothing narrower is allocatable.
MAX_PREFIX = 30

_PORT_RANGE_RE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


class AllocationError(Exception):
    """Base of every allocation failure; ``reason`` is the dtService status word."""

    reason: str = Status.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PoolExhausted(AllocationError):
    """No subnet of the requested size is left in the domain's address pool."""

    reason = Status.POOL_EXHAUSTED


class SubnetExhausted(AllocationError):
    """No client host address is left in a network's subnet."""

    reason = Status.SUBNET_EXHAUSTED


class PortsExhausted(AllocationError):
    """No UDP port is left in a node's port range."""

    reason = Status.PORTS_EXHAUSTED


class InvalidInput(AllocationError, ValueError):
    """An argument is malformed; also a ValueError so generic callers can catch it."""

    reason = Status.FAILED


# --------------------------------------------------------------------------- helpers


def _reject_bare_string(value: object, *, what: str) -> None:
    # A str is itself iterable, so a caller passing "100.96.0.0/24" where a list was
    # expected would otherwise be read silently as a list of single characters.
    if isinstance(value, (str, bytes)):
        raise InvalidInput(
            f"{what} must be a collection, not a single string: {value!r}"
        )


def _ipv4_network(value: object, *, what: str, strict: bool) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise InvalidInput(
            f"{what} must be a string like '100.96.0.0/12', got {value!r}"
        )
    try:
        net = ipaddress.ip_network(value.strip(), strict=strict)
    except ValueError as exc:
        raise InvalidInput(f"{what} {value!r} is not a valid network: {exc}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidInput(f"{what} {value!r} is not IPv4; dtService overlays are IPv4")
    return net


def _subnet(value: object) -> ipaddress.IPv4Network:
    net = _ipv4_network(value, what="subnet", strict=True)
    if net.prefixlen > MAX_PREFIX:
        raise InvalidInput(
            f"subnet {net} is too small: a network needs at least a /{MAX_PREFIX} "
            "(network, server .1, one client, broadcast)"
        )
    return net


def _address(value: object, *, what: str) -> ipaddress.IPv4Address | None:
    """Parse one address; ``None`` for an IPv6 address (never inside an IPv4 subnet)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be an address string, got {value!r}")
    addr = _parsed(value.strip())
    if addr is None:
        raise InvalidInput(f"{what} {value!r} is not a valid IP address")
    if isinstance(addr, ipaddress.IPv4Address):
        return addr
    return None


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address, None if it is none. Kept: every claim on a hub's table reads
    all of its addresses (the 99 claims of a pass over 100 nodes parsed 9,900)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_client_host(addr: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> bool:
    # Clients may use any address of the subnet except network, broadcast and the
    # server's .1; everything else in this module reduces to this one predicate.
    if addr not in subnet:
        return False
    offset = int(addr) - int(subnet.network_address)
    return 2 <= offset < subnet.num_addresses - 1


def is_client_address(*, address: object, subnet: str) -> bool:
    """Whether ``address`` is one a client of ``subnet`` may hold (not the network, the
    broadcast or the server's ``.1``); anything that is no IPv4 address is not."""
    try:
        return _is_client_host(ipaddress.IPv4Address(str(address)), ipaddress.IPv4Network(subnet))
    except ValueError:
        return False


def _client_range_text(subnet: ipaddress.IPv4Network) -> str:
    first = subnet.network_address + 2
    last = subnet.broadcast_address - 1
    return f"{first}-{last}"


def _require_text(value: object, *, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    return value


# --------------------------------------------------------------------------- subnets


def allocate_subnet(*, pool: str, prefix: int, taken: Iterable[str]) -> str:
    """Return the lowest ``/prefix`` subnet of ``pool`` overlapping none of ``taken``.

    ``taken`` may hold networks of any size, and networks (or IPv6 networks) outside the
    pool, which cannot collide and are ignored. Raises ``PoolExhausted`` when no aligned
    subnet of that size is free, ``InvalidInput`` on malformed arguments.
    """
    pool_net = _ipv4_network(pool, what="address pool", strict=True)
    if isinstance(prefix, bool) or not isinstance(prefix, int):
        raise InvalidInput(f"subnet prefix must be an integer, got {prefix!r}")
    if not pool_net.prefixlen < prefix <= MAX_PREFIX:
        raise InvalidInput(
            f"subnet prefix /{prefix} does not fit pool {pool_net}: it must be longer "
            f"than /{pool_net.prefixlen} and at most /{MAX_PREFIX}"
        )
    _reject_bare_string(taken, what="taken networks")

    pool_lo = int(pool_net.network_address)
    pool_hi = int(pool_net.broadcast_address)
    intervals: list[tuple[int, int]] = []
    for item in taken:
        # strict=False: a taken entry written with host bits set still occupies its
        # whole network, and erring towards "occupied" can never cause a double grant.
        try:
            net = ipaddress.ip_network(item.strip(), strict=False)
        except (AttributeError, ValueError):
            raise InvalidInput(
                f"taken network {item!r} is not a valid network"
            ) from None
        if not isinstance(net, ipaddress.IPv4Network):
            continue
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if hi < pool_lo or lo > pool_hi:
            continue
        intervals.append((max(lo, pool_lo), min(hi, pool_hi)))
    intervals.sort()

    # Sweep instead of testing every candidate: a /8 pool carved into /30s has four
    # million candidates, but only len(taken) intervals can push the cursor forward.
    size = 1 << (32 - prefix)
    cursor = pool_lo
    for lo, hi in intervals:
        if hi < cursor:
            continue
        if lo > cursor + size - 1:
            break
        cursor = ((hi + 1 + size - 1) // size) * size
        if cursor + size - 1 > pool_hi:
            break
    if cursor + size - 1 > pool_hi:
        total = pool_net.num_addresses // size
        used = _slots_touched(intervals, size=size, base=pool_lo)
        raise PoolExhausted(
            f"address pool {pool_net} has no free /{prefix} left: "
            f"{used} of {total} /{prefix} subnets overlap networks already in use"
        )
    return str(ipaddress.IPv4Network((cursor, prefix)))


def _slots_touched(intervals: list[tuple[int, int]], *, size: int, base: int) -> int:
    # Only used for the error message; merging slot ranges keeps the count exact when
    # several small taken networks share one candidate slot.
    slots = sorted(((lo - base) // size, (hi - base) // size) for lo, hi in intervals)
    count = 0
    cur_lo: int | None = None
    cur_hi = -1
    for lo, hi in slots:
        if cur_lo is None or lo > cur_hi + 1:
            if cur_lo is not None:
                count += cur_hi - cur_lo + 1
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_lo is not None:
        count += cur_hi - cur_lo + 1
    return count


# --------------------------------------------------------------------------- hosts


def server_address(*, subnet: str) -> str:
    """Return the server's (hub's) overlay address: the first host, ``.1``."""
    net = _subnet(subnet)
    return str(net.network_address + 1)


def lowest_free_host(*, subnet: str, taken: Iterable[str]) -> str:
    """Return the lowest client address of ``subnet`` not in ``taken``.

    Network, broadcast and the server address are never returned whatever ``taken``
    says; addresses in ``taken`` outside the subnet are ignored. Raises
    ``SubnetExhausted`` when every client address is taken.
    """
    net = _subnet(subnet)
    _reject_bare_string(taken, what="taken addresses")
    used: set[int] = set()
    for item in taken:
        addr = _address(item, what="taken address")
        if addr is not None and _is_client_host(addr, net):
            used.add(int(addr))
    return str(_lowest_free(net, used))


def _lowest_free(net: ipaddress.IPv4Network, used: set[int]) -> ipaddress.IPv4Address:
    # The walk is bounded by len(used) + 1 steps, so large subnets stay cheap.
    candidate = int(net.network_address) + 2
    last = int(net.broadcast_address) - 1
    while candidate <= last and candidate in used:
        candidate += 1
    if candidate > last:
        capacity = net.num_addresses - 3
        raise SubnetExhausted(
            f"subnet {net} has no free client address: all {capacity} of "
            f"{_client_range_text(net)} are in use ({len(used)} peers besides the server)"
        )
    return ipaddress.IPv4Address(candidate)


def claim_address(
    *,
    subnet: str,
    peers: Mapping[str, str],
    peer_key: str,
    preferred: str | None = None,
) -> str:
    """Decide the address ``peer_key`` gets, given the current allocation table.

    ``peers`` maps address -> owner id: the server's table, read together with its
    resourceVersion; the caller writes the result back under that version and retries
    on a conflict. The rule, in order:

    1. an address ``peer_key`` already owns in the table (lowest, if several) is kept,
       so re-runs are no-ops;
    2. else ``preferred`` (the address the client remembers from its own object) if it
       is a free client address of this subnet, so a table rebuilt after the server's
       object was lost hands every client back its old address;
    3. else the lowest free client address.

    Only client addresses (not network, broadcast or the server's ``.1``) are ever
    returned, and never one the table gives to another owner. An entry the key owns
    that is not a client address of this subnet (e.g. left from an earlier subnet) is
    not honoured; the caller's rewrite of the table drops it.
    """
    net = _subnet(subnet)
    key = _require_text(peer_key, what="peer key")
    if not isinstance(peers, Mapping):
        raise InvalidInput(
            f"peers must be a mapping of address -> owner id, got {peers!r}"
        )

    owners: dict[int, str] = {}
    own: list[int] = []
    for raw_addr, owner in peers.items():
        addr = _address(raw_addr, what="peers table address")
        if not isinstance(owner, str):
            raise InvalidInput(
                f"owner of {raw_addr!r} in the peers table must be a string"
            )
        if addr is None:
            continue
        owners[int(addr)] = owner
        if owner == key and _is_client_host(addr, net):
            own.append(int(addr))
    if own:
        return str(ipaddress.IPv4Address(min(own)))

    if preferred is not None:
        wanted = _address(preferred, what="preferred address")
        if (
            wanted is not None
            and _is_client_host(wanted, net)
            and int(wanted) not in owners
        ):
            return str(wanted)

    used = {a for a in owners if _is_client_host(ipaddress.IPv4Address(a), net)}
    return str(_lowest_free(net, used))


# --------------------------------------------------------------------------- ports


def allocate_port(*, port_range: str, taken: Iterable[int]) -> int:
    """Return the lowest port of ``port_range`` ('LOW-HIGH', inclusive) not in ``taken``.

    Ports in ``taken`` outside the range are ignored. Raises ``PortsExhausted`` when the
    whole range is in use.
    """
    if not isinstance(port_range, str):
        raise InvalidInput(
            f"port range must be a string like '51820-51899', got {port_range!r}"
        )
    match = _PORT_RANGE_RE.match(port_range)
    if not match:
        raise InvalidInput(f"port range {port_range!r} is not of the form 'LOW-HIGH'")
    low, high = int(match.group(1)), int(match.group(2))
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise InvalidInput(f"port range {port_range!r} must lie within 1-65535")
    if low > high:
        raise InvalidInput(f"port range {port_range!r} is empty: {low} is above {high}")
    _reject_bare_string(taken, what="taken ports")

    used: set[int] = set()
    for port in taken:
        if isinstance(port, bool) or not isinstance(port, int):
            raise InvalidInput(f"taken port {port!r} is not an integer")
        if low <= port <= high:
            used.add(port)
    candidate = low
    while candidate <= high and candidate in used:
        candidate += 1
    if candidate > high:
        raise PortsExhausted(
            f"UDP port range {low}-{high} is exhausted: all {high - low + 1} ports are "
            "in use by other networks on this node"
        )
    return candidate
