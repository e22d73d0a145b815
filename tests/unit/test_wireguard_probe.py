"""Reading an interface from what wireguard-go, `wg` and the kernel tell, and what
ensure_interface would change on it.

Both are pure (rules/probe.py); reading and changing real interfaces is in
tests/integration/test_wireguard_dataplane.py."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import generate_private_key, public_key_of
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.probe import (
    LiveInterface,
    LivePeer,
    clamp_changes,
    clamp_commands,
    clamp_mss,
    diff_interface,
    endpoint_matches,
    is_clamp_of,
    link_commands,
    live_interface,
    mangle_restore,
    parse_dump,
    parse_uapi,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.wgconfig import Peer

PRIVATE = generate_private_key()
PUBLIC = public_key_of(PRIVATE)
PEER = public_key_of(generate_private_key())
OTHER = public_key_of(generate_private_key())
LINK = {"ifname": "dt0123456789", "mtu": 1420, "flags": ["POINTOPOINT", "NOARP", "UP", "LOWER_UP"],
        "addr_info": [{"family": "inet", "local": "100.96.0.1", "prefixlen": 24, "scope": "global"},
                      {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]}


def dump(*peers: str) -> str:
    return "\n".join([f"{PRIVATE}\t{PUBLIC}\t51820\toff", *peers]) + "\n"


def hex_of(key: str) -> str:
    return base64.b64decode(key).hex()


def read(link: dict, wg_dump: str, forwarding: dict[int, bool], rules: str = "") -> LiveInterface:
    return live_interface(link, wireguard=parse_dump(wg_dump), forwarding=forwarding, rules=rules)


# ------------------------------------------------------------------------- parsing


def test_a_probe_gives_link_wireguard_and_forwarding_state_without_the_private_key():
    live = read(LINK, dump(f"{PEER}\t(none)\t198.18.0.11:40000\t100.96.0.2/32,10.0.0.0/8\t1795678000"
                           "\t92\t180\t25"), {4: True, 6: False})
    assert live.public_key == PUBLIC
    assert (live.listen_port, live.mtu, live.up) == (51820, 1420, True)
    assert live.addresses == {ipaddress.ip_interface("100.96.0.1/24")}  # link-local ones are not ours
    assert live.forwarding == {4: True, 6: False}
    peer = live.peers[PEER]
    assert (peer.allowed_ips, peer.endpoint, peer.keepalive, peer.latest_handshake) == (
        ["100.96.0.2/32", "10.0.0.0/8"], "198.18.0.11:40000", 25, 1795678000)
    assert PRIVATE not in repr(live)


def test_wireguard_gos_answer_reads_as_the_dump_of_the_same_interface():
    uapi = (f"private_key={hex_of(PRIVATE)}\nlisten_port=51820\n"
            f"public_key={hex_of(PEER)}\npreshared_key={'0' * 64}\nprotocol_version=1\n"
            "endpoint=198.18.0.11:40000\nlast_handshake_time_sec=1795678000\nlast_handshake_time_nsec=5\n"
            "tx_bytes=180\nrx_bytes=92\npersistent_keepalive_interval=25\n"
            "allowed_ip=100.96.0.2/32\nallowed_ip=10.0.0.0/8\n"
            f"public_key={hex_of(OTHER)}\nprotocol_version=1\nlast_handshake_time_sec=0\n"
            "last_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n"
            "errno=0\n\n")
    from_uapi = parse_uapi(uapi)
    from_dump = parse_dump(dump(f"{PEER}\t(none)\t198.18.0.11:40000\t100.96.0.2/32,10.0.0.0/8\t1795678000"
                                "\t92\t180\t25", f"{OTHER}\t(none)\t(none)\t(none)\t0\t0\t0\toff"))
    assert from_uapi == from_dump
    assert PRIVATE not in repr(from_uapi) and hex_of(PRIVATE) not in repr(from_uapi)


def test_a_new_interface_from_wireguard_go_has_no_key_port_or_peers():
    assert parse_uapi("protocol_version=1\nerrno=0\n\n") == parse_dump("(none)\t(none)\t0\toff\n")


def test_an_error_from_wireguard_go_is_not_read_as_an_empty_interface():
    with pytest.raises(ValueError, match="errno 5"):
        parse_uapi("errno=5\n\n")


def test_a_new_interface_has_no_key_peers_or_forwarding_reading():
    down = {"ifname": "dt0123456789", "mtu": 1500, "flags": ["POINTOPOINT", "NOARP"]}
    live = read(down, "(none)\t(none)\t0\toff\n", {})
    assert live.public_key is None and live.peers == {} and live.forwarding == {}
    assert (live.up, live.addresses) == (False, frozenset())


def test_a_peer_without_endpoint_allowed_ips_or_keepalive():
    live = read(LINK, dump(f"{PEER}\t(none)\t(none)\t(none)\t0\t0\t0\toff"), {4: False})
    peer = live.peers[PEER]
    assert (peer.allowed_ips, peer.endpoint, peer.keepalive, peer.latest_handshake) == ([], None, 0, 0)


# ------------------------------------------------------------------------- diffing

ADDRESS, MTU, PORT = "100.96.0.1/24", 1420, 51820
NAME = "dt0123456789"
NAMES = {"hub.example": ["198.18.0.10", "fd00::10"]}


def resolve(host: str, port: int) -> list[str]:
    return NAMES.get(host, [])


def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} is an address: nothing to resolve")


def live_hub(**changes) -> LiveInterface:
    """A converged hub: address, MTU, up, forwarding on, one client that roams to it."""
    return LiveInterface(**{
        "public_key": PUBLIC, "listen_port": PORT, "mtu": MTU, "up": True,
        "addresses": frozenset({ipaddress.ip_interface(ADDRESS)}), "forwarding": {4: True},
        "peers": {PEER: LivePeer(allowed_ips=["100.96.0.2/32"], endpoint="198.18.0.11:40000", keepalive=0,
                                 latest_handshake=1795678000)},
        **changes})


def diff(live: LiveInterface, peers: list[Peer], **wanted):
    args = {"name": NAME, "address": ADDRESS, "mtu": MTU, "listen_port": PORT, "public_key": PUBLIC,
            "forward": True, "resolve": no_dns, **wanted}
    return diff_interface(live, peers=peers, **args)


CLIENT = Peer(public_key=PEER, allowed_ips=["100.96.0.2/32"])


def test_nothing_to_do_when_converged():
    changes = diff(live_hub(), [CLIENT])
    assert not changes.changed and not changes.wireguard
    assert (changes.peers_added, changes.peers_removed, changes.peers_updated, changes.link_commands) == (
        [], [], [], [])
    # A client lets its port be picked once and keeps it; a network written as a host's
    # address is the same network.
    assert not diff(live_hub(listen_port=41234), [Peer(public_key=PEER, allowed_ips=["100.96.0.2"])],
                    listen_port=None).changed


def test_peers_added_removed_and_changed_are_told_apart():
    live = live_hub(peers={
        PEER: LivePeer(allowed_ips=["100.96.0.2/32"], endpoint=None, keepalive=0, latest_handshake=0),
        "gone": LivePeer(allowed_ips=["100.96.0.9/32"], endpoint=None, keepalive=0, latest_handshake=0),
        "also-gone": LivePeer(allowed_ips=[], endpoint=None, keepalive=0, latest_handshake=0)})
    changed = Peer(public_key=PEER, allowed_ips=["100.96.0.2/32"], persistent_keepalive=25)
    new = Peer(public_key=OTHER, allowed_ips=["100.96.0.3/32"])
    changes = diff(live, [new, changed])
    assert (changes.peers_added, changes.peers_removed, changes.peers_updated) == (
        [OTHER], ["also-gone", "gone"], [PEER])
    assert changes.wireguard and changes.changed and changes.link_commands == []


@pytest.mark.parametrize("wanted", [
    Peer(public_key=PEER, allowed_ips=["100.96.0.3/32"]),  # another address
    Peer(public_key=PEER, allowed_ips=["100.96.0.2/32", "10.0.0.0/8"]),  # one more network
    Peer(public_key=PEER, allowed_ips=["100.96.0.2/32"], endpoint="198.18.0.12:40000"),  # another endpoint
    Peer(public_key=PEER, allowed_ips=["100.96.0.2/32"], persistent_keepalive=25),  # keepalive switched on
])
def test_a_peer_differing_in_one_field_is_updated(wanted):
    assert diff(live_hub(), [wanted]).peers_updated == [PEER]


def test_a_live_keepalive_is_switched_off_when_no_longer_wanted():
    live = live_hub(peers={PEER: LivePeer(allowed_ips=["100.96.0.2/32"], endpoint=None, keepalive=25,
                                          latest_handshake=0)})
    assert diff(live, [CLIENT]).peers_updated == [PEER]


def test_a_new_key_or_port_changes_wireguard_but_not_the_peers():
    other_key = diff(live_hub(), [CLIENT], public_key=OTHER)
    assert (other_key.key, other_key.listen_port, other_key.wireguard) == (True, False, True)
    other_port = diff(live_hub(), [CLIENT], listen_port=51821)
    assert (other_port.key, other_port.listen_port, other_port.wireguard) == (False, True, True)
    assert other_port.peers_updated == [] and other_port.link_commands == []


@pytest.mark.parametrize("wanted, live, same", [
    ("198.18.0.11:40000", "198.18.0.11:40000", True),
    ("198.18.0.11:40000", "198.18.0.11:40001", False),
    ("198.18.0.11:40000", "198.18.0.12:40000", False),
    ("198.18.0.11:40000", None, False),  # no handshake yet: wg learnt nothing
    ("[fd00::11]:40000", "[fd00:0:0::11]:40000", True),  # one address, written two ways
    ("[fd00::11]:40000", "[fd00::12]:40000", False),
])
def test_endpoints_compare_by_address_and_port(wanted, live, same):
    assert endpoint_matches(wanted, live, resolve=no_dns) is same


@pytest.mark.parametrize("live, same", [
    ("198.18.0.10:51820", True),
    ("[fd00::10]:51820", True),  # any address the name resolves to
    ("198.18.0.10:51821", False),
    ("198.18.0.99:51820", False),
])
def test_a_host_name_endpoint_matches_what_it_resolves_to(live, same):
    assert endpoint_matches("hub.example:51820", live, resolve=resolve) is same
    assert not endpoint_matches("nowhere.example:51820", live, resolve=resolve)


def test_a_peer_that_roams_keeps_whatever_endpoint_wg_learnt():
    # The hub asks no endpoint of its clients: the live one came from their handshake.
    assert diff(live_hub(), [CLIENT]).peers_updated == []
    assert diff(live_hub(), [Peer(public_key=PEER, allowed_ips=["100.96.0.2/32"],
                                  endpoint="hub.example:51820")], resolve=resolve).peers_updated == [PEER]


def test_link_commands_mend_address_mtu_up_and_forwarding():
    broken = live_hub(mtu=1500, up=False, forwarding={4: False},
                      addresses=frozenset({ipaddress.ip_interface("100.96.7.1/24")}))
    assert link_commands(broken, name=NAME, address=ADDRESS, mtu=MTU, forward=True) == [
        ["ip", "addr", "add", ADDRESS, "dev", NAME],
        ["ip", "addr", "del", "100.96.7.1/24", "dev", NAME],  # a reallocated address does not linger
        ["ip", "link", "set", "dev", NAME, "mtu", str(MTU)],
        ["ip", "link", "set", "dev", NAME, "up"],
        ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
    ]
    changes = diff(broken, [CLIENT])
    assert changes.changed and not changes.wireguard and len(changes.link_commands) == 5


@pytest.mark.parametrize("live, commands", [
    (live_hub(mtu=1500), [["ip", "link", "set", "dev", NAME, "mtu", str(MTU)]]),
    (live_hub(addresses=frozenset()), [["ip", "addr", "add", ADDRESS, "dev", NAME]]),
    (live_hub(up=False), [["ip", "link", "set", "dev", NAME, "up"]]),
    (live_hub(forwarding={}), [["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]]),
])
def test_each_wrong_link_setting_gives_its_one_command(live, commands):
    assert link_commands(live, name=NAME, address=ADDRESS, mtu=MTU, forward=True) == commands


def test_forwarding_is_only_switched_on_for_a_hub_and_for_its_ip_version():
    # A client leaves the sysctl alone: its pod may forward for its own reasons.
    assert link_commands(live_hub(forwarding={4: False}), name=NAME, address=ADDRESS, mtu=MTU, forward=False) == []
    v6 = live_hub(addresses=frozenset({ipaddress.ip_interface("fd00:96::1/64")}), forwarding={4: True, 6: False})
    assert link_commands(v6, name=NAME, address="fd00:96::1/64", mtu=MTU, forward=True) == [
        ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]]


# ------------------------------------------------------------------------- MSS clamp

CLAMP = f"-A POSTROUTING -o {NAME} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380"
CLAMP_IN = f"-A PREROUTING -i {NAME} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380"
IPT = ["iptables", "-w", "5", "-t", "mangle"]


def test_a_probe_reads_the_bytes_of_each_peer_and_the_interfaces_clamps_only():
    rules = f"-P POSTROUTING ACCEPT\n{CLAMP}\n{CLAMP.replace(NAME, NAME + '0')}\n{CLAMP_IN}\n"
    live = read(LINK, dump(f"{PEER}\t(none)\t198.18.0.11:40000\t100.96.0.2/32\t1795678000\t92\t180\t25"),
                {4: True, 6: False}, rules)
    assert (live.peers[PEER].rx_bytes, live.peers[PEER].tx_bytes) == (92, 180)
    assert live.clamps == (CLAMP, CLAMP_IN)
    assert is_clamp_of(CLAMP, NAME) and is_clamp_of(CLAMP_IN, NAME) and not is_clamp_of(CLAMP, NAME[:-1])


def test_the_clamp_fits_the_interface_and_a_smaller_underlay_link():
    assert clamp_mss(mtu=1420, underlay_mtu=None) == 1380
    assert clamp_mss(mtu=1420, underlay_mtu=1500) == 1380, "1500 carries 1420 and WireGuard's 60"
    # 1300 leaves 1240 for the inner packet, which WireGuard would pad to 1248: 1232 fits.
    assert clamp_mss(mtu=1420, underlay_mtu=1300) == 1192
    assert clamp_mss(mtu=1420, underlay_mtu=1300, underlay_version=6) == 1176
    assert clamp_mss(mtu=1420, underlay_mtu=600) == 536, "never below TCP's minimum"


def test_the_clamps_are_added_once_replaced_when_their_size_changes_and_kept_when_right():
    add = [[*IPT, *CLAMP.split()], [*IPT, *CLAMP_IN.split()]]
    assert clamp_commands([], name=NAME, mss=1380) == add
    assert clamp_commands([CLAMP_IN, CLAMP], name=NAME, mss=1380) == []
    old = CLAMP.replace("1380", "1200")
    assert clamp_commands([old, CLAMP_IN], name=NAME, mss=1380) == [
        [*IPT, "-D", *old.split()[1:]], [*IPT, "-D", *CLAMP_IN.split()[1:]], *add]
    assert clamp_commands([CLAMP, CLAMP, CLAMP_IN], name=NAME, mss=1380)[-2:] == add, "a duplicate goes too"
    assert clamp_commands([CLAMP], name=NAME, mss=None) == [[*IPT, "-D", *CLAMP.split()[1:]]]


def test_a_new_links_clamps_are_one_restore_of_the_mangle_table_that_deletes_leftovers_first():
    old = CLAMP.replace("1380", "1200")
    rules = clamp_changes([old], name=NAME, mss=1380)
    assert rules == [old.replace("-A ", "-D ", 1), CLAMP, CLAMP_IN]
    assert mangle_restore(rules).splitlines() == ["*mangle", *rules, "COMMIT"]
    assert mangle_restore(rules).endswith("COMMIT\n")
    assert clamp_changes([CLAMP_IN, CLAMP], name=NAME, mss=1380) == []
