"""Two reconcilers with the same settings elect a leader through a Lease: the follower runs
nothing while the leader lives, and a `kubectl apply` made right after the leader is SIGKILLed
is served by the follower within the lease duration plus one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, free_port, kubectl_json, run_playbook
from test_daemon_e2e import apply, connected, daemon_pid, wait_for

pytestmark = pytest.mark.integration

LEASE = {"dtservice_daemon_lease_node": "node0", "dtservice_daemon_lease_duration_seconds": 10,
         "dtservice_daemon_lease_renew_deadline_seconds": 6, "dtservice_daemon_lease_retry_period_seconds": 1}


def log_lines(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def leader_gauge(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("dtservice_reconciler_leader "):
                return float(line.split()[1])
    raise AssertionError("no dtservice_reconciler_leader in /metrics")


@pytest.fixture(scope="module")
def two(bed_factory, tmp_path_factory):
    """The bed, reconciler A started by deploy.yml and B started by hand from the same
    settings (only the metrics port differs); B is stopped at the end."""
    bed = bed_factory(nodes=2)
    bed.create_pod("node0", "hub-pod")
    bed.create_pod("node1", "joiner-pod")
    inventory_path = tmp_path_factory.mktemp("inv") / "lease.json"
    bed.write_inventory(inventory_path, services={}, daemon=True)
    inventory = json.loads(inventory_path.read_text())
    ports = (free_port(), free_port())
    inventory["federation"]["vars"].update(LEASE, dtservice_daemon_metrics_port=ports[0])
    inventory_path.write_text(json.dumps(inventory))
    run_playbook(bed, "playbooks/deploy.yml", inventory=str(inventory_path))
    directory = bed.dir / "reconciler"
    settings = json.loads((directory / "settings.json").read_text())
    assert settings["lease"]["namespace"] == bed.node("node0").namespace
    (directory / "settings-b.json").write_text(json.dumps({**settings, "metrics_port": ports[1]}))
    environment = dict(os.environ)
    for line in (directory / "reconciler.env").read_text().splitlines():
        name, _sep, value = line.partition("=")
        if name and not name.startswith("#"):
            environment[name.strip()] = value.strip().strip('"')
    log = directory / "reconciler-b.log"
    with log.open("ab") as output:
        b = subprocess.Popen([sys.executable, "-m", "ansible_collections.sightline.dtservice.plugins.plugin_utils"
                              ".reconciler", "--settings", str(directory / "settings-b.json")],
                             cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        yield {"bed": bed, "a_log": directory / "reconciler.log", "b_log": log, "ports": ports, "b": b}
    finally:
        b.terminate()
        try:
            b.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(b.pid, signal.SIGKILL)
            b.wait()


def test_one_leads_and_the_other_runs_nothing(two):
    bed = two["bed"]
    wait_for(lambda: any(e["msg"] == "leading" for e in log_lines(two["a_log"])), timeout=60, what="A leading")
    wait_for(lambda: any(e["msg"] == "started" for e in log_lines(two["b_log"])), timeout=30, what="B started")
    apply(bed, "node0", "hub-pod", name="net")
    wait_for(lambda: connected(bed, "node0", "net"), timeout=90, what="the hub Connected")
    time.sleep(3)  # B had every chance to run
    assert leader_gauge(two["ports"][0]) == 1 and leader_gauge(two["ports"][1]) == 0
    b_log = log_lines(two["b_log"])
    assert not [e for e in b_log if e["msg"] in ("reconciled", "leading", "run crashed")], b_log[-5:]
    a_runs = [e for e in log_lines(two["a_log"]) if e["msg"] == "reconciled"]
    assert a_runs
    print("A's runs:", [(e["node"], e["cause"], e.get("because"), e["writes"]) for e in a_runs])
    lease = kubectl_json(bed, "node0", "get", "lease", "dtservice-reconciler", "-n", bed.node("node0").namespace)
    a_identity = next(e["identity"] for e in log_lines(two["a_log"]) if e["msg"] == "started")
    assert lease["spec"]["holderIdentity"] == a_identity


def test_sigkill_of_the_leader_the_other_serves_an_apply_made_right_after(two):
    bed = two["bed"]
    killed_at = time.time()
    os.kill(daemon_pid(bed), signal.SIGKILL)
    started = apply(bed, "node1", "joiner-pod", name="net")
    wait_for(lambda: connected(bed, "node1", "net"), timeout=120, what="the joiner Connected by B")
    took = time.monotonic() - started
    # The run that wrote Connected logs itself when it has ended.
    wait_for(lambda: [e for e in log_lines(two["b_log"]) if e["msg"] == "reconciled"
                      and (e["services"].get("net") == "Connected" or "node1" in e.get("with_nodes", []))],
             timeout=60, what="B's run to end")
    b_log = log_lines(two["b_log"])
    leading = next(e["ts"] for e in b_log if e["msg"] == "leading")
    runs = [e for e in b_log if e["msg"] == "reconciled"]
    # The follower ran nothing while the leader lived, and took over within the lease duration
    # (plus the period it reads the Lease in, and the run of the daemon log's clock).
    assert all(e["ts"] - e["seconds"] >= leading - 0.1 for e in runs)
    assert leading - killed_at <= LEASE["dtservice_daemon_lease_duration_seconds"] \
        + LEASE["dtservice_daemon_lease_retry_period_seconds"] + 1
    longest = max(e["seconds"] for e in runs)
    assert took <= LEASE["dtservice_daemon_lease_duration_seconds"] + 2 * longest + 5, (took, runs)
    assert leader_gauge(two["ports"][1]) == 1
    print(f"apply right after the leader's SIGKILL -> Connected: {took:.1f} s (B leading after "
          f"{leading - killed_at:.1f} s; its runs took up to {longest:.1f} s)")
