"""The nftables generation request and answer (rules/rtnetlink.py), on the bytes the kernel
sends; and the kernel's own answer for this process's namespace (data/netns.py).

The links and addresses, which need namespaces with links in them, are read against real
ones in tests/integration/test_wireguard_dataplane.py."""

from __future__ import annotations

import os
import struct

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.data import netns
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import rtnetlink


def kernel_message(kind: int, payload: bytes, *, sequence: int = 1) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 4)
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, sequence, 0) + padded


def attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def test_the_request_asks_nf_tables_for_its_generation():
    request = rtnetlink.generation_request(sequence=7)
    length, kind, flags, sequence, _port = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, sequence) == (len(request), (10 << 8) | 16, 1, 7)


def test_the_generation_is_read_from_the_answer_whatever_else_it_carries():
    answer = kernel_message(rtnetlink.NFT_MSG_NEWGEN, struct.pack("=BBH", 0, 0, 0)
                            + attribute(3, b"iptables\0") + attribute(1, struct.pack(">I", 4242))
                            + attribute(2, struct.pack(">I", 99)))
    assert rtnetlink.generation(answer) == 4242


def test_an_error_or_an_answer_without_a_generation_raises():
    refused = kernel_message(2, struct.pack("=i", -93) + b"\0" * 16)  # EPROTONOSUPPORT: no nf_tables
    with pytest.raises(rtnetlink.NetlinkError):
        rtnetlink.generation(refused)
    with pytest.raises(rtnetlink.NetlinkError):
        rtnetlink.generation(kernel_message(rtnetlink.NFT_MSG_NEWGEN, struct.pack("=BBH", 0, 0, 0)))


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel answers nf_tables requests to root")
def test_the_kernel_answers_for_this_namespace_and_none_for_a_namespace_not_there():
    assert isinstance(netns.rules_generation(None), int)
    assert netns.rules_generation("/nonexistent/netns") is None


def attributes_of(data: bytes, offset: int) -> dict[int, bytes]:
    found = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        found[kind] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def test_a_link_change_names_its_link_and_asks_for_an_acknowledgement():
    moved = rtnetlink.link_request(name="dt0a1b2c3d4e5f6", netns_fd=9, sequence=2)
    length, kind, flags, sequence, _port = struct.unpack_from("=IHHII", moved)
    assert (length, kind, flags, sequence) == (len(moved), rtnetlink.RTM_NEWLINK, 0x1 | 0x4, 2)
    _family, _type, index, up_flags, change = struct.unpack_from("=BxHiII", moved, 16)
    assert (index, up_flags, change) == (0, 0, 0), "by name, and its state left alone"
    assert attributes_of(moved, 32) == {3: b"dt0a1b2c3d4e5f6\0", 28: struct.pack("=i", 9)}

    mtu = rtnetlink.link_request(name="wg0", mtu=1380, sequence=1)
    assert attributes_of(mtu, 32) == {3: b"wg0\0", 4: struct.pack("=I", 1380)}
    raised = rtnetlink.link_request(name="wg0", up=True, sequence=3)
    assert struct.unpack_from("=II", raised, 24) == (1, 1), "IFF_UP set, and only it changed"


@pytest.mark.parametrize(("address", "family", "prefix", "raw"), [
    ("100.96.0.1/24", 2, 24, bytes([100, 96, 0, 1])),
    ("fd00::2/64", 10, 64, bytes.fromhex("fd000000000000000000000000000002")),
])
def test_an_address_is_added_as_ip_adds_it(address, family, prefix, raw):
    request = rtnetlink.address_request(index=7, address=address, sequence=1)
    _length, kind, flags, _sequence, _port = struct.unpack_from("=IHHII", request)
    assert (kind, flags) == (rtnetlink.RTM_NEWADDR, 0x1 | 0x4 | 0x400 | 0x200), "created, and refused if there"
    assert struct.unpack_from("=BBBBI", request, 16) == (family, prefix, 0, 0, 7)
    assert attributes_of(request, 24) == {1: raw, 2: raw}


def test_an_acknowledgement_is_read_for_its_own_request_and_a_refusal_raises_the_kernels_error():
    def answer(error: int, sequence: int) -> bytes:
        return struct.pack("=IHHII", 36, 2, 0x100, sequence, 0) + struct.pack("=i", error) + b"\0" * 16

    rtnetlink.acknowledge(answer(0, 2), sequence=2)
    with pytest.raises(rtnetlink.NetlinkError) as refused:
        rtnetlink.acknowledge(answer(-17, 1), sequence=1)
    assert refused.value.errno == 17 and "EEXIST" in str(refused.value)
    with pytest.raises(rtnetlink.NetlinkError, match="no answer to request 3"):
        rtnetlink.acknowledge(answer(0, 2), sequence=3)
    deleted = rtnetlink.delete_request(name="wg0", sequence=4)
    assert struct.unpack_from("=HH", deleted, 4) == (rtnetlink.RTM_DELLINK, 0x1 | 0x4)
    assert attributes_of(deleted, 32) == {3: b"wg0\0"}
