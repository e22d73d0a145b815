"""Shared fixtures: the local federation (a real control plane and real namespaces) and a
way to run the project's playbooks against it. Every bed is stopped, also when a test fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    needs = []
    if os.geteuid() != 0:
        needs.append("root")
    if not os.environ.get("DTSERVICE_CONTROLPLANE_BIN"):
        needs.append("DTSERVICE_CONTROLPLANE_BIN (source .dtservice.env after scripts/setup.sh)")
    if not needs:
        return
    skip = pytest.mark.skip(reason="integration test needs " + " and ".join(needs))
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def bed_factory(tmp_path_factory, request):
    """Start local federations on demand; stop all of them when the module ends. When a test
    of the module failed, the bed's state (WireGuard, dtServices, daemon log) is printed
    first, so that a failure in CI explains itself."""
    from testbed import Testbed

    beds = []
    failed_before = request.session.testsfailed

    def start(*, nodes: int = 3, clusters: int = 1):
        for bed in beds:
            bed.stop()
        # A prefix of its own: beds of other test runs on this machine stay untouched.
        bed = Testbed(tmp_path_factory.mktemp("bed"), prefix=f"dtt{os.getpid()}-")
        beds.append(bed)
        bed.start(nodes=nodes, clusters=clusters)
        return bed

    yield start
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for bed in beds:
        if request.session.testsfailed > failed_before and reporter is not None and bed.state["clusters"]:
            reporter.write_line(f"\n--- the test bed of {request.module.__name__} after its failure ---")
            for line in bed.diagnose().splitlines():
                reporter.write_line(line)
        bed.stop()


@pytest.fixture(scope="module")
def bed(bed_factory):
    return bed_factory()


def ansible_playbook(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook of this Python's environment, from the project root with its
    ansible.cfg, without a bed (the unit tests' own small playbooks and inventories)."""
    return subprocess.run([Path(sys.executable).with_name("ansible-playbook"), *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **(env or {})})


def start_playbook(bed, playbook: str, *extra: str, inventory: str | None = None, env: dict | None = None,
                   **popen) -> subprocess.Popen:
    """ansible-playbook from the project root against the bed's inventory, started (``popen``:
    subprocess.Popen's options)."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
               inventory or str(ROOT / "inventories/local"), str(ROOT / playbook), *extra]
    environment = {**os.environ, "DTSERVICE_TESTBED_DIR": str(bed.dir), "ANSIBLE_FORCE_COLOR": "0",
                   **(env or {})}
    return subprocess.Popen(command, cwd=ROOT, env=environment, **popen)


def run_playbook(bed, playbook: str, *extra: str, inventory: str | None = None,
                 check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook from the project root against the bed's inventory, to its end."""
    process = start_playbook(bed, playbook, *extra, inventory=inventory, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"{playbook} failed ({result.returncode}):\n"
                             f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


def write_inventory(bed, path: Path, *, services: dict[str, list[dict]],
                    domains: list[dict] | None = None, daemon: bool = False) -> str:
    """An inventory of the bed's nodes (like inventories/local) with these declarations;
    the reconciler daemon is left out unless asked for (``Testbed.write_inventory``)."""
    return bed.write_inventory(path, services=services, domains=domains, daemon=daemon)


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host."""
    counts = {}
    lines = output.rsplit("PLAY RECAP", maxsplit=1)[-1].strip().splitlines()
    for line in lines:
        host, _sep, fields = line.partition(":")
        if not fields:
            continue
        counts[host.strip()] = {k: int(v) for k, v in (f.split("=") for f in fields.split())}
    return counts


def kubectl_json(bed, node_name: str, *args: str) -> dict:
    node = bed.node(node_name)
    return json.loads(bed.kubectl(node, *args, "-o", "json", admin=True).stdout)


def key_secret(bed, node_name: str, service: str = "myservice", *, check: bool = True) -> dict | None:
    """The key Secret of the node's dtService ``service``, from its cluster's keys namespace
    (None when there is none and not ``check``)."""
    node = bed.node(node_name)
    done = bed.kubectl(node, "get", "secret", contract.key_secret_name(node.namespace, service),
                       "-n", contract.KEYS_NAMESPACE, "-o", "json", admin=True, check=check)
    return json.loads(done.stdout) if done.returncode == 0 else None


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (for a daemon's metrics)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
