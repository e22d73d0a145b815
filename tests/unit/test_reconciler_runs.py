"""The reconciler's runs: a run that raises is logged and its nodes requeued, the callback's
summary decides what is requeued, and a run over its time limit is stopped and failed (real
ansible-runner runs of a small playbook standing in for playbooks/reconcile.yml)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import WRITES_FILE, ApiClient, Endpoint
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.controller import Controller
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.runner import (
    RunResult,
    read_writes,
    run_reconcile,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import Outcome, Run, Write
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import Settings


def settings(tmp_path: Path, **extra) -> Settings:
    return Settings.from_dict({"nodes": [{"name": "node0", "namespace": "ns0"}, {"name": "node1", "namespace": "ns1"}],
                               "project_dir": str(tmp_path), "inventory": [str(tmp_path / "hosts")],
                               "work_dir": str(tmp_path / "work"), "debounce_seconds": 0, **extra})


def wait_for(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_run_that_raises_is_logged_and_its_nodes_requeued(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dtservice-reconciler")
    runs = []

    def run(*, settings, run, run_id):
        runs.append(run)
        if len(runs) == 1:
            raise RuntimeError("the runner broke")
        return RunResult(ok=True, seconds=0.01)

    controller = Controller(settings(tmp_path), run=run)
    loop = threading.Thread(target=controller.loop, daemon=True)
    loop.start()
    try:
        controller.event("node1", "pods", "MODIFIED", {"metadata": {"name": "p"}})
        wait_for(lambda: len(runs) >= 2)  # the requeued run, a backoff of 1 s later
    finally:
        controller.stop()
        loop.join(timeout=5)
    assert runs[:2] == [Run("node1"), Run("node1")]
    crashed = [r for r in caplog.records if r.getMessage() == "run crashed"]
    assert len(crashed) == 1 and crashed[0].exc_info is not None
    assert crashed[0].fields["node"] == "node1" and "the runner broke" in crashed[0].fields["error"]
    requeued = [r.fields for r in caplog.records if r.getMessage() == "requeued"]
    assert requeued[0]["node"] == "node1" and requeued[0]["failed"] is True and requeued[0]["in_seconds"] == 1
    assert not loop.is_alive()


def test_a_joiners_event_brings_the_server_into_the_run(tmp_path):
    runs = []
    controller = Controller(settings(tmp_path),
                            run=lambda *, settings, run, run_id: runs.append(run) or RunResult(ok=True, seconds=0))
    server = {"metadata": {"name": "net"}, "spec": {},
              "peers": {"100.96.0.1": {"labels": {"sid.sightline.dtservice.a": "server"}}}}
    controller.listed("node0", "dtservices", [server])
    controller.event("node1", "dtservices", "ADDED", {"metadata": {"name": "net"}, "spec": {}})
    loop = threading.Thread(target=controller.loop, daemon=True)
    loop.start()
    try:
        wait_for(lambda: runs)
    finally:
        controller.stop()
        loop.join(timeout=5)
    assert runs == [Run("node1", ("node0",))]


def test_the_callbacks_summary_decides_failed_and_not_done():
    run = Run("node1", ("node0",))
    summary = {"node1": {"failed": False, "services": {"a": "Connected", "b": "Pending", "c": "WaitingForPod",
                                                       "d": "ServerUnreachable"}},
               "node0": {"failed": True, "services": {"net": "Failed"}}}
    assert RunResult(ok=True, seconds=1, summary=summary).outcomes(run) == {
        "node1": Outcome(failed=False, not_done=("b", "d")), "node0": Outcome(failed=True, not_done=("net",))}
    # A node the summary does not name had nothing to report; a failed run fails everyone.
    assert RunResult(ok=True, seconds=1).outcomes(run) == {"node1": Outcome(False), "node0": Outcome(False)}
    assert RunResult(ok=False, seconds=1, summary=summary).outcomes(run)["node1"].failed


def project(tmp_path: Path, tasks: str) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "ansible.cfg").write_text("[defaults]\ngathering = explicit\n")
    (tmp_path / "hosts").write_text("[all:vars]\nansible_connection=local\n"
                                    "ansible_python_interpreter={{ ansible_playbook_python }}\n[all]\nnode0\nnode1\n")
    (tmp_path / "playbooks" / "reconcile.yml").write_text(
        f"- hosts: all\n  gather_facts: false\n  tasks:\n{tasks}")


def test_a_run_reads_the_callbacks_results_file(tmp_path):
    project(tmp_path, """    - ansible.builtin.copy:
        dest: "{{ lookup('ansible.builtin.env', 'DTSERVICE_RESULTS_FILE') }}"
        content: '{"node1": {"failed": false, "services": {"net": "Pending"}}}'
      run_once: true
""")
    result = run_reconcile(settings=settings(tmp_path), run=Run("node1"), run_id="r1")
    assert result.ok and not result.timed_out
    assert result.summary == {"node1": {"failed": False, "services": {"net": "Pending"}}}
    assert (tmp_path / "work" / "runs" / "node1" / "artifacts" / "r1").is_dir()


def test_a_run_over_its_time_limit_is_stopped_and_failed(tmp_path):
    # A pause in the controller, as the in-process dtservice_* modules work there.
    project(tmp_path, "    - ansible.builtin.pause:\n        seconds: 45\n      run_once: true\n")
    started = time.monotonic()
    result = run_reconcile(settings=settings(tmp_path, run_timeout_seconds=1), run=Run("node0", ("node1",)),
                           run_id="r2")
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 20
    assert result.outcomes(Run("node0", ("node1",))) == {"node0": Outcome(True), "node1": Outcome(True)}
    wait_for(lambda: not _mentioning(str(tmp_path / "playbooks")), timeout=5)


def _mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(pid))
        except OSError:
            continue
    return found


class _Answering(BaseHTTPRequestHandler):
    """A PATCH is answered with the object at a new version, a DELETE with a Status, a GET with a list."""

    protocol_version = "HTTP/1.1"
    version = 40

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: dict) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PATCH(self) -> None:
        type(self).version += 1
        self._answer({"metadata": {"uid": "u1", "resourceVersion": str(self.version)}})

    def do_DELETE(self) -> None:
        self._answer({"kind": "Status", "status": "Success"})

    def do_GET(self) -> None:
        self._answer({"metadata": {"uid": "list", "resourceVersion": "99"}, "items": []})


def test_the_writes_of_a_runs_processes_are_its_echoes(tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = ApiClient(Endpoint(server=f"http://127.0.0.1:{server.server_port}"))
        api.request("PATCH", "/x")  # no run: nothing recorded
        writes = tmp_path / "writes.jsonl"
        monkeypatch.setenv(WRITES_FILE, str(writes))
        api.request("PATCH", "/x")
        api.request("GET", "/x")
        api.request("DELETE", "/x")
        api.request("PATCH", "/x")
    finally:
        server.shutdown()
    with writes.open("a") as cut:
        cut.write('["u1", "4')  # a process killed mid-line
    assert read_writes(writes) == {Write("u1", "42"), Write("u1", "43")}
    assert read_writes(tmp_path / "none.jsonl") == frozenset()


def test_a_run_tells_its_processes_where_to_record_their_writes(tmp_path):
    project(tmp_path, """    - ansible.builtin.copy:
        dest: "{{ lookup('ansible.builtin.env', 'DTSERVICE_WRITES_FILE') }}"
        content: '["u7", "70"]'
      run_once: true
""")
    result = run_reconcile(settings=settings(tmp_path), run=Run("node1"), run_id="r3")
    assert result.ok and result.written == {Write("u7", "70")}
