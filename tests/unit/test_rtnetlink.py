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
