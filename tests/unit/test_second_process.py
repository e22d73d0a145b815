"""A converged pass's second process: its answer, its meeting point with the parent, its failures, the
API connections it must not share, and the pass's two halves it runs (machine_pass)."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.data.mangle import TableMemory
from ansible_collections.sightline.dtservice.plugins.module_utils.data.podnet import NamespaceMemory, RuntimeViews
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClient, Endpoint
from ansible_collections.sightline.dtservice.plugins.module_utils.machine import machine_pass
from ansible_collections.sightline.dtservice.plugins.module_utils.machine.second_process import (
    SecondProcess,
    SecondProcessLost,
)


def gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_answer_comes_back_and_the_child_is_reaped():
    second = SecondProcess(lambda meet: {"pid": os.getpid(), "nodes": ["node1", "node2"]}, timeout=10)
    answer = second.answer()
    assert answer["nodes"] == ["node1", "node2"]
    assert answer["pid"] != os.getpid(), "the work ran in another process"
    assert gone(answer["pid"])


def test_neither_process_passes_the_meeting_point_before_the_other_has_reached_it():
    def work(meet):
        time.sleep(0.3)  # the parent is there first and waits
        reached = time.monotonic()
        meet()
        return reached, time.monotonic()

    second = SecondProcess(work, timeout=10)
    arrived = time.monotonic()
    second.meet()
    parent_went_on = time.monotonic()
    reached, child_went_on = second.answer()
    assert arrived < reached <= parent_went_on, "the parent waited for the child"

    def late(meet):
        meet()
        return time.monotonic()

    second = SecondProcess(late, timeout=10)
    time.sleep(0.3)  # the child is there first and waits
    released = time.monotonic()
    second.meet()
    assert second.answer() >= released, "the child waited for the parent"


def test_a_child_that_ends_before_the_meeting_point_does_not_hold_the_parent():
    second = SecondProcess(lambda meet: os._exit(0), timeout=10)
    started = time.monotonic()
    second.meet()
    assert time.monotonic() - started < 5
    with pytest.raises(SecondProcessLost):
        second.answer()


def test_a_child_whose_work_fails_gives_no_answer():
    def work(meet):
        raise RuntimeError("boom")

    with pytest.raises(SecondProcessLost, match="without its answer"):
        SecondProcess(work, timeout=10).answer()


def test_a_child_that_does_not_finish_in_time_is_killed():
    def work(meet):
        time.sleep(30)

    second = SecondProcess(work, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SecondProcessLost, match="in time"):
        second.answer()
    assert time.monotonic() - started < 5
    assert gone(second._pid)


class Connections(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the client port of its connection, kept alive."""

    protocol_version = "HTTP/1.1"
    ports: set[int] = set()

    def do_GET(self) -> None:  # noqa: N802 - the handler's name
        Connections.ports.add(self.client_address[1])
        body = json.dumps({"port": self.client_address[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Connections)
    Connections.ports = set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_child_opens_its_own_connection_and_the_parent_keeps_its_own(api_server):
    """A TLS connection used by two processes goes out of step with the server: the child's
    requests go over a connection of its own, and the parent's connection goes on."""
    client = ApiClient(Endpoint(server=api_server))
    first = client.request("GET", "/")["port"]
    in_child = SecondProcess(lambda meet: client.request("GET", "/")["port"], timeout=10).answer()
    again = client.request("GET", "/")["port"]
    assert again == first, "the parent goes on over its connection"
    assert in_child != first, "the child opened one of its own"
    assert Connections.ports == {first, in_child}


def pass_nodes(count: int) -> list[NodeRef]:
    return [NodeRef(name=f"node{i}", namespace=f"ns{i}", address="198.18.0.10") for i in range(count)]


def run_phase(nodes: list[NodeRef]):
    """machine_pass's ``phase`` for a call without API servers: the work of every node, in turn."""
    def phase(work, *, one_at_a_time: bool = False, only=None):
        return {node.name: work(cluster=None, node=node) for node in nodes if only is None or node.name in only}
    return phase


def test_the_two_halves_are_configured_before_either_settles_and_the_second_is_the_childs(tmp_path):
    nodes = pass_nodes(6)
    tables = TableMemory(path=str(tmp_path / "tables.json"))
    runtimes = RuntimeViews(memory=NamespaceMemory(folder=str(tmp_path)))
    parent = os.getpid()

    def configure(*, cluster, node):
        if os.getpid() != parent:  # what the child reads of a pod's table is kept by the parent
            tables.absorb({f"/run/netns/{node.name}": [1, 2, 3, "-P PREROUTING ACCEPT\n"]})
        return {"node": node.name, "at": time.monotonic(), "by": os.getpid()}

    def settle(configured):
        return {**configured, "settled_at": time.monotonic(), "settled_by": os.getpid()}

    settled = machine_pass.examined_in_two(run_phase(nodes), nodes=nodes, configure=configure, settle=settle,
                                           runtimes=runtimes, tables=tables, timeout=10)
    assert sorted(settled) == [node.name for node in nodes]
    assert {settled[f"node{i}"]["by"] for i in range(3)} == {parent}
    children = {settled[f"node{i}"]["by"] for i in range(3, 6)}
    assert len(children) == 1 and parent not in children
    assert all(s["settled_by"] == s["by"] for s in settled.values()), "each half settles where it was configured"
    assert max(s["at"] for s in settled.values()) < min(s["settled_at"] for s in settled.values())
    assert sorted(tables.take_learned()) == ["/run/netns/node3", "/run/netns/node4", "/run/netns/node5"]


def test_the_nodes_of_a_second_process_that_dies_are_done_here(tmp_path):
    nodes = pass_nodes(4)
    parent = os.getpid()

    def configure(*, cluster, node):
        if os.getpid() != parent:
            os._exit(3)  # as a crash would end it: no answer
        return {"node": node.name}

    def settle(configured):
        return {**configured, "pid": os.getpid()}

    settled = machine_pass.examined_in_two(run_phase(nodes), nodes=nodes, configure=configure, settle=settle,
                                           runtimes=RuntimeViews(), tables=TableMemory(path=str(tmp_path / "t.json")),
                                           timeout=10)
    assert settled == {node.name: {"node": node.name, "pid": parent} for node in nodes}
