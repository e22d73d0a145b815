"""The UDP ports a machine's sockets hold, read from the kernel's socket tables. Pure, no I/O.

Owns parsing ``/proc/net/udp`` and ``/proc/net/udp6`` (read in the namespace where a node's
address lives, by ``data/wggo.py``) into the local ports bound there and the sockets (inodes)
bound to each, so that a hub is given a port nothing else on its node listens on: another
WireGuard on 51820, a DNS server, whatever was there first. Every bound socket counts, whatever
address it is bound to: a port that is merely skipped costs nothing, one that collides fails
the hub.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["udp_sockets"]


def udp_sockets(tables: Iterable[str]) -> dict[int, set[int]]:
    """Local port -> the inodes of the sockets bound to it, from texts of ``/proc/net/udp`` and
    ``/proc/net/udp6`` (header lines, also of a second table in the same text, are skipped)."""
    ports: dict[int, set[int]] = {}
    for table in tables:
        for line in table.splitlines():
            fields = line.split()
            if len(fields) < 10 or ":" not in fields[1] or not fields[9].isdigit():
                continue
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port:
                ports.setdefault(port, set()).add(int(fields[9]))
    return ports
