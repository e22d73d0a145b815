"""data/wggo.py asks the kernel for a WireGuard link once per process when the kernel has
no such link type: each later link goes straight to wireguard-go (the question cost two
processes for each of 100 links in a first deploy). Any other refusal (the name is taken,
no rights) is asked again for the next link. The processes are stand-ins here; the
integration tests make real links with real wireguard-go."""

from __future__ import annotations

import subprocess

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.data import wggo


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """What create_link ran: 'kernel' for the kernel link, 'wireguard-go' for a process."""
    made: list[str] = []
    monkeypatch.setattr(wggo, "_NO_KERNEL_WIREGUARD", type(wggo._NO_KERNEL_WIREGUARD)())
    monkeypatch.setattr(wggo, "_start_wireguard_go", lambda name, netns: made.append("wireguard-go"))
    monkeypatch.setattr(wggo, "move_link", lambda name, **_where: None)
    return made


def answering(calls: list[str], stderr: str):
    def run(argv, *, netns=None, check=True, input=None, **_kw):  # noqa: A002 - netns.run's name
        if argv[:3] == ["ip", "link", "add"]:
            calls.append("kernel")
            return subprocess.CompletedProcess(argv, 2, "", stderr)
        return subprocess.CompletedProcess(argv, 0, "", "")
    return run


def test_a_kernel_without_wireguard_is_asked_once(calls, monkeypatch):
    monkeypatch.setattr(wggo, "run", answering(calls, "Error: Unknown device type.\n"))
    for index in range(3):
        wggo.create_link(f"dtprobe{index}", None, "/proc/self/ns/net", 1420)
    assert calls == ["kernel", "wireguard-go", "wireguard-go", "wireguard-go"]


def test_another_refusal_is_asked_again(calls, monkeypatch):
    monkeypatch.setattr(wggo, "run", answering(calls, "RTNETLINK answers: Operation not permitted\n"))
    for index in range(2):
        wggo.create_link(f"dtprobe{index}", None, "/proc/self/ns/net", 1420)
    assert calls == ["kernel", "wireguard-go", "kernel", "wireguard-go"]
