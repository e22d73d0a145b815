"""The reconcilers' leader election, driven by a fake clock: who may take the Lease when, and
that a leader has stopped starting runs before anybody else may take it; and the
controller, which starts no run while it follows and stops its runs when it stops leading."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClients
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.controller import Controller
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.election import (
    CREATE,
    RENEW,
    TAKE,
    WAIT,
    Election,
    Held,
    LeaseTiming,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.lease import Elector
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.runner import RunResult
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import LeaseSettings, Settings

TIMING = LeaseTiming(duration=15, renew_deadline=10, retry_period=2)


def held(holder: str, version: int) -> Held:
    return Held(holder=holder, duration=TIMING.duration, version=str(version))


def test_nobodys_lease_is_created_and_then_renewed():
    a = Election("a", timing=TIMING)
    assert not a.leading(now=0)
    assert a.observe(None, now=0) == CREATE
    a.written(sent=0)
    assert a.leading(now=9.9) and not a.leading(now=10)
    assert a.observe(held("a", 1), now=2) == RENEW


def test_a_follower_takes_a_silent_lease_only_a_full_duration_after_it_last_saw_it_change():
    b = Election("b", timing=TIMING)
    assert b.observe(held("a", 1), now=100) == WAIT
    assert b.observe(held("a", 2), now=110) == WAIT  # renewed: the wait starts again
    assert b.observe(held("a", 2), now=124.9) == WAIT
    assert not b.leading(now=124.9)
    assert b.observe(held("a", 2), now=125) == TAKE
    b.written(sent=125)
    assert b.leading(now=125)


def test_a_released_lease_is_taken_at_once():
    b = Election("b", timing=TIMING)
    assert b.observe(held("", 3), now=5) == TAKE


def test_the_old_leader_has_stopped_before_the_new_one_may_take_the_lease():
    """Whatever the delays: a's last renew is sent at t, written no earlier, seen by b no
    earlier; a stops at t + renew_deadline, b takes no earlier than seen + duration."""
    for delay_to_server, delay_to_follower in [(0, 0), (0.5, 3), (4.9, 0), (2, 7)]:
        a, b = Election("a", timing=TIMING), Election("b", timing=TIMING)
        sent = 50.0
        a.written(sent=sent)  # a's last successful renew; it dies (or cannot reach the server) after it
        seen = sent + delay_to_server + delay_to_follower
        b.observe(held("a", 7), now=seen)
        take = next(t / 10 for t in range(int(seen * 10), 2000) if b.observe(held("a", 7), now=t / 10) == TAKE)
        assert not a.leading(now=take)
        assert take - seen >= TIMING.duration


def test_a_leader_that_sees_another_holder_stops_at_once():
    a = Election("a", timing=TIMING)
    a.observe(None, now=0)
    a.written(sent=0)
    assert a.observe(held("b", 9), now=2) == WAIT  # say, a hand edit or a lost write
    assert not a.leading(now=2)


def test_the_timing_must_leave_the_old_leader_time_to_stop():
    with pytest.raises(ValueError):
        LeaseTiming(duration=10, renew_deadline=10, retry_period=2).check()
    with pytest.raises(ValueError):
        LeaseTiming(duration=15, renew_deadline=10, retry_period=10).check()
    with pytest.raises(ValueError):
        Settings.from_dict({"nodes": [], "project_dir": "/p", "inventory": "/i", "work_dir": "/w",
                            "lease": {"namespace": "ns0", "duration_seconds": 5}})
    settings = Settings.from_dict({"nodes": [], "project_dir": "/p", "inventory": "/i", "work_dir": "/w",
                                   "lease": {"namespace": "ns0", "kubeconfig": "/k"}})
    assert settings.lease is not None and settings.lease.name == "dtservice-reconciler"
    assert settings.lease.node.namespace == "ns0" and settings.lease.timing == LeaseTiming()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_follower_starts_no_run_and_a_leader_that_runs_out_kills_its_runs(tmp_path: Path):
    settings = Settings.from_dict({"nodes": [{"name": "node0", "namespace": "ns0"}], "project_dir": str(tmp_path),
                                   "inventory": [str(tmp_path / "hosts")], "work_dir": str(tmp_path / "work"),
                                   "debounce_seconds": 0, "lease": {"namespace": "ns0"}})
    clock = Clock()
    runs, killed = [], []
    release = threading.Event()

    def run(*, settings, run, run_id):
        runs.append(run)
        release.wait(10)
        return RunResult(ok=False, seconds=0)

    controller = Controller(settings, run=run, clock=clock, kill=killed.append, identity="me")
    assert controller.election is not None
    loop = threading.Thread(target=controller.loop, daemon=True)
    loop.start()
    try:
        controller.event("node0", "pods", "MODIFIED", {"metadata": {"name": "p"}})
        time.sleep(0.5)
        assert runs == []  # a follower
        with controller._wake:
            controller.election.observe(None, now=clock())
            controller.election.written(sent=clock())
            controller._wake.notify_all()
        wait_for(lambda: len(runs) == 1)
        assert runs[0].node == "node0"
        clock.advance(TIMING.renew_deadline)  # no renew came through: the leadership runs out
        with controller._wake:
            controller._wake.notify_all()
        wait_for(lambda: len(killed) == 1)
        release.set()
        time.sleep(0.5)
        assert len(runs) == 1  # its node, requeued as failed, waits for a leader
    finally:
        release.set()
        controller.stop()
        loop.join(timeout=5)


class _LeaseServer(BaseHTTPRequestHandler):
    """One Lease, as an API server keeps it: 404 before it exists, 409 for a stale version."""

    protocol_version = "HTTP/1.1"
    lease: dict | None = None
    version = 0

    def log_message(self, *args) -> None:
        pass

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def _store(self, body: dict) -> None:
        cls = type(self)
        cls.version += 1
        cls.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(cls.version)}}
        self._answer(200, cls.lease)

    def do_GET(self) -> None:
        if self.lease is None:
            self._answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        else:
            self._answer(200, self.lease)

    def do_POST(self) -> None:
        body = self._body()
        if self.lease is not None:
            self._answer(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
        else:
            self._store(body)

    def do_PUT(self) -> None:
        body = self._body()
        if self.lease is None or body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            self._answer(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
        else:
            self._store(body)


def test_two_electors_through_one_lease(tmp_path: Path):
    _LeaseServer.lease, _LeaseServer.version = None, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LeaseServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps({
        "current-context": "c", "users": [{"name": "u", "user": {"token": "t"}}],
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    lease = LeaseSettings.from_dict({"namespace": "ns0", "kubeconfig": str(kubeconfig), "duration_seconds": 15,
                                     "renew_deadline_seconds": 10, "retry_period_seconds": 2})
    clock = Clock()
    lock = threading.Condition()
    a, b = (Elector(lease=lease, election=Election(name, timing=lease.timing), lock=lock, clients=ApiClients(),
                    stopping=threading.Event(), clock=clock) for name in ("a", "b"))
    try:
        assert a.step() == CREATE and a.election.leading(now=clock())
        assert b.step() == WAIT and not b.election.leading(now=clock())
        clock.advance(2)
        assert a.step() == RENEW
        assert _LeaseServer.lease["spec"]["holderIdentity"] == "a"
        assert b.step() == WAIT  # b sees the renew
        clock.advance(14.9)  # a is gone; b saw its last renew 14.9 s ago
        assert b.step() == WAIT
        assert not a.election.leading(now=clock())  # a's own deadline passed long before
        clock.advance(0.1)
        assert b.step() == TAKE and b.election.leading(now=clock())
        assert _LeaseServer.lease["spec"]["holderIdentity"] == "b"
        assert _LeaseServer.lease["spec"]["leaseTransitions"] == 1
        assert a.step() == WAIT and not a.election.leading(now=clock())
        b.release()
        assert not b.election.leading(now=clock())
        assert a.step() == TAKE and a.election.leading(now=clock())  # a released Lease is taken at once
    finally:
        server.shutdown()
