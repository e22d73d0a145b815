"""data/wggo.py's look for leftovers before a link is made: the machine's processes are read
only where a control socket says a wireguard-go of that name may be there. Reading every
process's command line for each new link made a deploy of 100 links on one machine quadratic.
(tests/integration/test_wireguard_dataplane.py proves the refusal and the clearing on real
wireguard-go processes.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.data import wggo

NAME = "dtnosuchlink0"
HOST_NETNS = "/proc/self/ns/net"


@pytest.fixture
def reads(tmp_path, monkeypatch) -> list[str]:
    """The reads of every process's command line that clear_leftovers makes (none found)."""
    made: list[str] = []
    monkeypatch.setattr(wggo, "SOCKET_DIR", str(tmp_path))

    def processes() -> dict[int, str]:
        made.append("every process")
        return {}

    monkeypatch.setattr(wggo, "_wireguard_go_processes", processes)
    return made


def test_without_a_control_socket_no_process_is_read(reads):
    wggo.clear_leftovers(NAME, None, HOST_NETNS)
    assert reads == []


def test_a_control_socket_nobody_answers_on_is_looked_into_and_removed(reads, tmp_path):
    stale = Path(tmp_path) / f"{NAME}.sock"
    stale.write_text("")  # what a killed wireguard-go leaves: a path nobody listens on
    wggo.clear_leftovers(NAME, None, HOST_NETNS)
    assert reads == ["every process", "every process"]  # its orphans, then a live one elsewhere
    assert not stale.exists()
