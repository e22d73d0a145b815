"""rules/sockets.py against the kernel's own socket tables: a port bound here is found."""

from __future__ import annotations

import socket
from pathlib import Path

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Domain, Member
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import registry, sockets


def tables() -> list[str]:
    return [Path(p).read_text() for p in ("/proc/net/udp", "/proc/net/udp6") if Path(p).exists()]


def test_a_bound_udp_socket_is_found_and_a_closed_one_is_not():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        assert port in set(sockets.udp_sockets(tables()))
    assert port not in set(sockets.udp_sockets(tables()))


def test_both_tables_in_one_text_and_headers_only():
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    udp = header + "   0: 0100007F:CA6C 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 4711 2 0 0\n"
    udp6 = header + ("   1: 00000000000000000000000000000000:CA6D 00000000000000000000000000000000:0000 07 "
                     "00000000:00000000 00:00000000 00000000 0 0 0 2 0 0\n")
    # `cat` of both files gives one text; the second header is skipped like the first.
    assert sockets.udp_sockets([udp + udp6]) == {51820: {4711}, 51821: {0}}
    assert sockets.udp_sockets([header]) == {}


def test_a_new_network_is_not_given_a_port_in_use():
    held = "   0: 00000000:CA6D 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 99 2 0 0\n"
    domain = Domain.from_object({"metadata": {"name": "d"}, "spec": {
        "members": [{"name": "node0", "namespace": "ns0", "address": "198.18.0.2", "portRange": "51820-51822"}],
        "pool": "100.96.0.0/16"}})
    server = domain.member(name="node0")
    assert isinstance(server, Member)
    entry = registry.new_network_entry(name="n", domain=domain, server=server, server_id="x", networks={},
                                       ports_taken=[51820, *sockets.udp_sockets([held])])
    # 51820 is another network's and 51821 (0xCA6D) another process's: 51822 is the first free port.
    assert entry["endpoint"] == "198.18.0.2:51822"
