"""machine_pass.only_examines: whether configuring a node can only read and compare its
interfaces, so the pass configures the nodes one at a time rather than side by side (threads
help only while wireguard-go processes are started, stopped and waited on). A wrong True
would slow a first deploy down; a wrong False only costs the converged pass its speed
(bench/run measures both on real interfaces; the integration tests run both kinds of pass).
And machine_pass.goes_ahead: whether a node is configured right after its own reconcile,
while the other nodes are still reconciled."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.control.reconciler import Outcome
from ansible_collections.sightline.dtservice.plugins.module_utils.data import wggo
from ansible_collections.sightline.dtservice.plugins.module_utils.machine.machine_pass import goes_ahead, only_examines
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.plan import LABEL_PREFIX

NODE = NodeRef(name="node1", namespace="tenant-a", address="198.18.0.11", netns="bed-node1")


class Listed:
    """The reads only_examines makes of a cluster: the node's dtServices and key Secrets as listed."""

    def __init__(self, services: list[dict], secrets: dict[str, dict] | None = None) -> None:
        self.services = services
        self.secrets = secrets or {}

    def list_services(self, node: NodeRef, *, shared: bool = False) -> list[dict]:
        assert node is NODE and shared
        return self.services

    def key_secrets(self, node: NodeRef) -> dict[str, dict]:
        assert node is NODE
        return self.secrets


def service(name: str, *, provisioned: bool = True, deleting: bool = False) -> dict:
    uid = f"uid-{name}"
    metadata: dict = {"name": name, "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-05T10:00:00Z"
    peers = {"100.96.0.2": {"labels": {f"{LABEL_PREFIX}{contract.peer_id(uid=uid)}": "client"}}} if provisioned else {}
    return {"metadata": metadata, "peers": peers}


def interface_of(name: str) -> str:
    return contract.interface_name(namespace=NODE.namespace, network=name, node_netns=NODE.netns)


@pytest.fixture
def sockets(tmp_path, monkeypatch) -> Path:
    """The machine's wireguard-go control socket directory, empty."""
    monkeypatch.setattr(wggo, "SOCKET_DIR", str(tmp_path))
    return tmp_path


def test_every_provisioned_interface_in_place_only_examines(sockets):
    for name in ("net-a", "net-b"):
        (sockets / f"{interface_of(name)}.sock").touch()
    assert only_examines(cluster=Listed([service("net-a"), service("net-b")]), node=NODE) is True


def test_an_interface_still_to_be_made_needs_the_threads(sockets):
    (sockets / f"{interface_of('net-a')}.sock").touch()
    assert only_examines(cluster=Listed([service("net-a"), service("net-b")]), node=NODE) is False


def test_a_dtservice_being_deleted_needs_the_threads(sockets):
    (sockets / f"{interface_of('net-a')}.sock").touch()
    assert only_examines(cluster=Listed([service("net-a", deleting=True)]), node=NODE) is False


def test_a_dtservice_not_provisioned_yet_has_no_interface_to_make_in_this_pass(sockets):
    (sockets / f"{interface_of('net-a')}.sock").touch()
    listed = Listed([service("net-a"), service("net-b", provisioned=False)])
    assert only_examines(cluster=listed, node=NODE) is True


def test_a_key_rotation_under_way_needs_the_threads(sockets):
    (sockets / f"{interface_of('net-a')}.sock").touch()
    staged = {"net-a": {"data": {contract.PRIVATE_KEY_FIELD: "a2V5", contract.NEXT_PRIVATE_KEY_FIELD: "bmV4dA=="}}}
    settled = {"net-a": {"data": {contract.PRIVATE_KEY_FIELD: "a2V5"}}}
    assert only_examines(cluster=Listed([service("net-a")], settled), node=NODE) is True
    assert only_examines(cluster=Listed([service("net-a")], staged), node=NODE) is False


def outcome(name: str, *, role: str | None = contract.CLIENT, status: str = contract.Status.PENDING) -> Outcome:
    return Outcome(name=name, status=status, role=role)


def test_a_node_of_new_clients_of_planned_networks_goes_ahead():
    """Its links are made while the other nodes are still reconciled (goes_ahead)."""
    listed = Listed([service("net-a"), service("net-b")])
    assert goes_ahead([outcome("net-a"), outcome("net-b")], planned={"net-a", "net-b"}, cluster=listed, node=NODE)


@pytest.mark.parametrize(("outcomes", "why"), [
    ([outcome("net-a", status=contract.Status.CONNECTED)], "nothing new: a converged node keeps its own order"),
    ([outcome("net-a"), outcome("net-b", role=contract.SERVER)], "a hub's table is whole only after every reconcile"),
    ([outcome("net-a"), outcome("net-c")], "net-c's hub was not registered by the call's hubs' step"),
    ([outcome("net-a"), outcome("net-b", role=None, status=contract.Status.FAILED)], "a failure waits for the phase"),
])
def test_a_node_with_a_hub_an_unplanned_network_or_nothing_new_waits_for_the_configure_phase(outcomes, why):
    listed = Listed([service(o.name) for o in outcomes])
    assert not goes_ahead(outcomes, planned={"net-a", "net-b"}, cluster=listed, node=NODE), why


def test_a_deletion_or_a_staged_key_waits_for_the_configure_phase():
    deleting = Listed([service("net-a"), service("net-b", deleting=True)])
    assert not goes_ahead([outcome("net-a")], planned={"net-a"}, cluster=deleting, node=NODE)
    staged = Listed([service("net-a")], secrets={"net-a": {"data": {contract.NEXT_PRIVATE_KEY_FIELD: "eA=="}}})
    assert not goes_ahead([outcome("net-a")], planned={"net-a"}, cluster=staged, node=NODE)
