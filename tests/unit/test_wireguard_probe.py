"""Reading an interface from one probe's output: what ensure_interface compares with."""

from __future__ import annotations

import ipaddress
import json

from ansible_collections.sightline.dtservice.plugins.module_utils.data.wireguard import _parse_probe
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import generate_private_key, public_key_of

PRIVATE = generate_private_key()
PEER = public_key_of(generate_private_key())
LINK = json.dumps([{"ifname": "dt0123456789", "mtu": 1420, "flags": ["POINTOPOINT", "NOARP", "UP", "LOWER_UP"],
                    "addr_info": [{"family": "inet", "local": "100.96.0.1", "prefixlen": 24, "scope": "global"},
                                  {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]}])


def dump(*peers: str) -> str:
    return "\n".join([f"{PRIVATE}\t{public_key_of(PRIVATE)}\t51820\toff", *peers]) + "\n"


def test_a_probe_gives_link_wireguard_and_forwarding_state_without_the_private_key():
    live = _parse_probe(LINK, dump(f"{PEER}\t(none)\t198.18.0.11:40000\t100.96.0.2/32,10.0.0.0/8\t1795678000"
                                   "\t92\t180\t25"), "4 1\n6 0\n")
    assert live.public_key == public_key_of(PRIVATE)
    assert (live.listen_port, live.mtu, live.up) == (51820, 1420, True)
    assert live.addresses == {ipaddress.ip_interface("100.96.0.1/24")}  # link-local ones are not ours
    assert live.forwarding == {4: True, 6: False}
    peer = live.peers[PEER]
    assert (peer.allowed_ips, peer.endpoint, peer.keepalive, peer.latest_handshake) == (
        ["100.96.0.2/32", "10.0.0.0/8"], "198.18.0.11:40000", 25, 1795678000)
    assert PRIVATE not in repr(live)


def test_a_new_interface_has_no_key_peers_or_forwarding_reading():
    down = json.dumps([{"ifname": "dt0123456789", "mtu": 1500, "flags": ["POINTOPOINT", "NOARP"]}])
    live = _parse_probe(down, "(none)\t(none)\t0\toff\n", "4 \n6 \n")
    assert live.public_key is None and live.peers == {} and live.forwarding == {}
    assert (live.up, live.addresses) == (False, frozenset())


def test_a_peer_without_endpoint_allowed_ips_or_keepalive():
    live = _parse_probe(LINK, dump(f"{PEER}\t(none)\t(none)\t(none)\t0\t0\t0\toff"), "4 0\n")
    peer = live.peers[PEER]
    assert (peer.allowed_ips, peer.endpoint, peer.keepalive, peer.latest_handshake) == ([], None, 0, 0)
