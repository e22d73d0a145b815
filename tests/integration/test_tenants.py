"""Tenants cannot hurt each other: a real restricted user of one federation node attacks the
networks of the tenants of the others, through the API only, while the victims' pods ping
each other through their hub for the whole module.

The bed has four federation nodes (node3 shares node0's kubelet machine, so a pass that
fails on the attacker's node would also stop the hub's). The victims are tenants too: alice
holds ``dtservice-tenant`` in node0's namespace, bob ``edit`` in node1's and carol ``admin``
in node2's; together they run the network ``victimnet`` (hub on node0). The attacker,
mallory, holds ``edit`` in node3's namespace only. node3 is a member of ``mydomain``, so
mallory may join ``victimnet`` (she does, in the fixture); she is not a member of
``private``. Each attack is one test, acting only through mallory's kubeconfig, and asserts
that she gets at most a status and an Event on her own objects: no other dtService changes
status, no Event lands elsewhere, and the victims' WireGuard interfaces are what they were.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import generate_private_key
from conftest import key_secret, kubectl_json, run_playbook
from test_daemon_e2e import wait_for
from test_dataplane_e2e import in_pod, interfaces_in, ping

pytestmark = pytest.mark.integration

NETWORK = "victimnet"
DOMAINS = [{"name": "mydomain", "members": ["node0", "node1", "node2", "node3"]},
           {"name": "private", "members": ["node0", "node1", "node2"]}]
# (node, user, ClusterRole bound in the node's namespace, pod)
VICTIMS = [("node0", "alice", "dtservice-tenant", "hub-pod"), ("node1", "bob", "edit", "client1"),
           ("node2", "carol", "admin", "client2")]
ATTACKER = "mallory"
ATTACKER_POD = "mallory-pod"
# After the daemon has answered an attack (the attacker's object shows it), a little longer
# for anything that would wrongly follow (a companion run of the hub's node).
SETTLE = 6
PING_INTERVAL = "0.5"


@dataclass
class PingLoop:
    """``ping`` running in a victim's pod for the whole module."""

    what: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> tuple[int, list[int]]:
        """Packets sent, and the sequence numbers never answered (the last one, possibly in
        flight when the loop stops, does not count)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=10)
        text = self.log.read_text()
        sent = re.search(r"(\d+) packets transmitted", text)
        assert sent, f"{self.what}: ping printed no summary:\n{text[-2000:]}"
        replied = {int(seq) for seq in re.findall(r"icmp_seq=(\d+) ttl=", text)}
        return int(sent.group(1)), sorted(set(range(1, int(sent.group(1)))) - replied)


@dataclass
class Federation:
    bed: object
    attacker: str  # mallory's kubeconfig
    addresses: dict[str, str]  # pod -> overlay address
    pings: list[PingLoop] = field(default_factory=list)

    @property
    def node3(self):
        return self.bed.node("node3")

    def mallory(self, *args: str, stdin: str | None = None,
                namespace: str | None = None) -> subprocess.CompletedProcess:
        """kubectl as mallory, in her namespace unless told."""
        return self.bed.kubectl(self.node3, *args, "-n", namespace or self.node3.namespace, stdin=stdin,
                                check=False, kubeconfig=self.attacker)


def service_manifest(name: str, *, pod: str, domain: str = "mydomain", **extra) -> str:
    return json.dumps({"apiVersion": "sid.sightlineinnovation.com/v1", "kind": "dtService",
                       "metadata": {"name": name}, "spec": {"domainSelector": domain, "podSelector": pod}, **extra})


def get(bed, node: str, name: str) -> dict | None:
    found = bed.kubectl(bed.node(node), "get", "dtservice", name, "-n", bed.node(node).namespace, "-o", "json",
                        admin=True, check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def status_of(bed, node: str, name: str) -> str | None:
    return (get(bed, node, name) or {}).get("status")


def statuses(bed) -> dict[str, str | None]:
    """Every dtService of the bed, ``namespace/name`` -> status."""
    found = {}
    for node in bed.nodes:
        for item in kubectl_json(bed, node.name, "get", "dtservices", "-n", node.namespace)["items"]:
            found[f"{node.namespace}/{item['metadata']['name']}"] = item.get("status")
    return found


def victim_events(bed) -> dict[str, tuple]:
    """Events in the victims' namespaces, name -> (object, reason, message, count)."""
    found = {}
    for node, *_rest in VICTIMS:
        for event in kubectl_json(bed, node, "get", "events", "-n", bed.node(node).namespace)["items"]:
            found[event["metadata"]["name"]] = (f"{event['involvedObject'].get('kind')}/"
                                                f"{event['involvedObject'].get('name')}", event.get("reason"),
                                                event.get("message"), event.get("count") or 1)
    return found


def wireguard(bed) -> dict[str, list[tuple]]:
    """The interfaces in each victim pod as ``wg show <name> dump`` has them, without the
    private key and the counters: (name, public key, port) and per peer (name, key, endpoint,
    allowed IPs). Only the pod's own: wireguard-go's sockets are machine-wide, so ``wg show
    all`` in a pod would list every pod's of the machine."""
    found = {}
    for node, _user, _role, pod in VICTIMS:
        rows = []
        for name in interfaces_in(bed, node, pod):
            dump = in_pod(bed, node, pod, "wg", "show", name, "dump", check=True).stdout.splitlines()
            _private, public, port, _fwmark = dump[0].split("\t")
            rows.append((name, public, port))
            for line in dump[1:]:
                key, _psk, endpoint, allowed, *_counters = line.split("\t")
                rows.append((name, key, endpoint, allowed))
        found[pod] = sorted(rows)
    return found


def daemon_log(bed) -> list[str]:
    log = bed.dir / "reconciler" / "reconciler.log"
    return log.read_text(errors="replace").splitlines() if log.exists() else []


@dataclass
class Snapshot:
    statuses: dict[str, str | None]
    events: dict[str, tuple]
    wireguard: dict[str, list[tuple]]
    log_lines: int

    def failures_since(self, bed) -> list[str]:
        """The daemon's failed runs since this snapshot, to explain a failed assertion."""
        return [line for line in daemon_log(bed)[self.log_lines:] if '"failed": true' in line][-5:]


def snapshot(bed) -> Snapshot:
    return Snapshot(statuses=statuses(bed), events=victim_events(bed), wireguard=wireguard(bed),
                    log_lines=len(daemon_log(bed)))


def new_events(before: Snapshot, after: Snapshot) -> dict[str, tuple]:
    return {k: v for k, v in after.events.items() if before.events.get(k) != v}


def assert_unhurt(fed: Federation, before: Snapshot, *, own: set[str] = frozenset()) -> None:
    """Nothing but mallory's objects ``own`` (names in her namespace) changed status; no
    Event in a victim's namespace; the victims' interfaces are as they were."""
    time.sleep(SETTLE)
    after = snapshot(fed.bed)
    mine = {f"{fed.node3.namespace}/{name}" for name in own}
    changed = {k: (before.statuses.get(k), after.statuses.get(k))
               for k in set(before.statuses) | set(after.statuses)
               if k not in mine and before.statuses.get(k) != after.statuses.get(k)}
    why = "\n".join(before.failures_since(fed.bed))
    assert changed == {}, f"other dtServices changed status: {changed}\n{why}"
    assert new_events(before, after) == {}, f"Events landed in a victim's namespace\n{why}"
    assert after.wireguard == before.wireguard, f"a victim's WireGuard interface changed\n{why}"
    for node, _user, _role, pod in VICTIMS:
        assert status_of(fed.bed, node, NETWORK) == "Connected", f"{pod}'s network"


def assert_forbidden(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode != 0, f"{what}: allowed: {result.stdout}"
    assert "(Forbidden)" in result.stderr and f'User "{ATTACKER}"' in result.stderr, f"{what}: {result.stderr}"


def events_of(bed, node: str, name: str) -> list[dict]:
    items = kubectl_json(bed, node, "get", "events", "-n", bed.node(node).namespace)["items"]
    return [e for e in items if e["involvedObject"].get("kind") == "dtService" and e["involvedObject"]["name"] == name]


def start_ping(bed, node: str, pod: str, address: str, log: Path) -> PingLoop:
    with open(log, "w") as out:
        process = subprocess.Popen(["ip", "netns", "exec", bed.pod_netns(node, pod), "ping", "-n", "-i",
                                    PING_INTERVAL, "-W", "2", address], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    return PingLoop(what=f"{pod} -> {address}", process=process, log=log)


@pytest.fixture(scope="module")
def fed(bed_factory, tmp_path_factory):
    bed = bed_factory(nodes=4)
    where = tmp_path_factory.mktemp("tenants")
    for node, _user, _role, pod in VICTIMS:
        bed.create_pod(node, pod)
    inventory = bed.write_inventory(where / "tenants.json", services={}, domains=DOMAINS, daemon=True)
    run_playbook(bed, "playbooks/deploy.yml", inventory=inventory)
    # The victims apply their network as the tenants they are, each with another role.
    for node, user, role, pod in VICTIMS:
        config = bed.tenant_kubeconfig(bed.node(node), user=user, role=role)
        bed.kubectl(bed.node(node), "apply", "-n", bed.node(node).namespace, "-f", "-", kubeconfig=config,
                    stdin=service_manifest(NETWORK, pod=pod))
        wait_for(lambda node=node: status_of(bed, node, NETWORK) == "Connected", timeout=120,
                 what=f"{NETWORK} Connected on {node}")
    addresses = {"hub-pod": "100.96.0.1", **{pod: own_entry(get(bed, node, NETWORK))[0]
                                             for node, _user, _role, pod in VICTIMS[1:]}}
    assert list(get(bed, "node0", NETWORK)["peers"]["100.96.0.1"]["labels"].values()) == ["server"]
    assert ping(bed, "node1", "client1", addresses["client2"]) == 3, "client to client through the hub"
    # mallory: edit in node3's namespace, nothing else; she joins the victims' network as a
    # member's tenant may, with a pod she made herself.
    attacker = bed.tenant_kubeconfig(bed.node("node3"), user=ATTACKER, role="edit")
    federation = Federation(bed=bed, attacker=attacker, addresses=addresses)
    made = federation.mallory("apply", "-f", "-", stdin=json.dumps(bed.pod_manifest("node3", ATTACKER_POD)))
    assert made.returncode == 0, made.stderr
    bed.wait_pod_running("node3", ATTACKER_POD)
    joined = federation.mallory("apply", "-f", "-", stdin=service_manifest(NETWORK, pod=ATTACKER_POD))
    assert joined.returncode == 0, joined.stderr
    wait_for(lambda: status_of(bed, "node3", NETWORK) == "Connected", timeout=120, what="mallory's join Connected")
    federation.pings = [start_ping(bed, "node1", "client1", addresses["hub-pod"], where / "client1-hub.log"),
                        start_ping(bed, "node1", "client1", addresses["client2"], where / "client1-client2.log"),
                        start_ping(bed, "node2", "client2", addresses["hub-pod"], where / "client2-hub.log")]
    try:
        yield federation
    finally:
        for loop in federation.pings:
            if loop.process.poll() is None:
                loop.process.kill()
                loop.process.wait(timeout=10)


def client_entries(service: dict) -> list[tuple[str, dict]]:
    """The (address, entry) pairs of a client's ``peers`` other than its server's."""
    server_key = service["spec"]["server"]["publicKey"]
    return [(a, e) for a, e in service["peers"].items() if e["publicKey"] != server_key]


def own_entry(service: dict) -> tuple[str, dict]:
    ((address, entry),) = client_entries(service)
    return address, entry


@pytest.fixture
def leftovers(fed):
    """Objects an attack makes in her namespace ("kind/name"), deleted after it, also when it
    fails: Secrets first (a poisoned key must not outlive the attack); a dtService whose
    teardown does not come (a failing pass) is let go by the admin, so the next attack starts clean."""
    made: list[str] = []
    yield made
    for obj in sorted(made, key=lambda o: not o.startswith("secret/")):
        gone = fed.mallory("delete", obj, "--ignore-not-found", "--wait=true", "--timeout=60s")
        if gone.returncode != 0:
            fed.bed.kubectl(fed.node3, "patch", obj, "-n", fed.node3.namespace, "--type=merge", "-p",
                            json.dumps({"metadata": {"finalizers": []}}), admin=True, check=False)


# ------------------------------------------------------------------ RBAC


def test_the_attacker_holds_only_her_namespace(fed):
    bed, ns3 = fed.bed, fed.node3.namespace
    who = json.loads(fed.mallory("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == ATTACKER
    assert who["status"]["userInfo"].get("groups") == ["system:authenticated"]

    def can(*args: str, namespace: str = ns3) -> bool:
        answer = fed.mallory("auth", "can-i", *args, namespace=namespace)
        assert answer.stdout.strip() in ("yes", "no"), answer.stderr
        return answer.stdout.strip() == "yes"

    assert can("create", "dtservices.sid.sightlineinnovation.com")
    assert can("list", "dtdomains.sid.sightlineinnovation.com")
    for verb in ("create", "update", "patch", "delete"):
        assert not can(verb, "dtdomains.sid.sightlineinnovation.com")
    assert not can("update", "dtservices.sid.sightlineinnovation.com", "--subresource=status")
    for node, *_rest in VICTIMS:
        ns = bed.node(node).namespace
        for args in (("get", "dtservices.sid.sightlineinnovation.com"), ("get", "secrets"), ("patch", "pods"),
                     ("create", "dtservices.sid.sightlineinnovation.com")):
            assert not can(*args, namespace=ns), (node, args)
    # The standard roles carry the dtService rules (the aggregation controller put them there).
    view = kubectl_json(bed, "node0", "get", "clusterrole", "view")
    assert any("dtdomains" in rule.get("resources", []) for rule in view["rules"])


def test_the_attacker_cannot_create_or_patch_a_dtdomain(fed):
    before = snapshot(fed.bed)
    forged = {"apiVersion": "sid.sightlineinnovation.com/v1", "kind": "dtDomain", "metadata": {"name": "private"},
              "spec": {"members": [{"name": "node3", "namespace": fed.node3.namespace, "address": "198.18.0.13"}]}}
    assert_forbidden(fed.mallory("create", "-f", "-", stdin=json.dumps(forged)), "create a dtDomain")
    assert_forbidden(fed.mallory("patch", "dtdomain", "mydomain", "--type=merge", "-p",
                                 json.dumps({"spec": {"pool": "100.96.0.0/24"}})), "patch her copy of mydomain")
    assert_forbidden(fed.mallory("patch", "dtdomain", "mydomain", "--subresource=status", "--type=merge", "-p",
                                 json.dumps({"status": {"networks": {}}})), "patch the registry")
    assert_forbidden(fed.mallory("delete", "dtdomain", "mydomain"), "delete her copy of mydomain")
    assert_forbidden(fed.mallory("patch", "dtdomain", "mydomain", "--type=merge", "-p",
                                 json.dumps({"spec": {"pool": "100.96.0.0/24"}}),
                                 namespace=fed.bed.node("node0").namespace), "patch the home copy")
    assert_unhurt(fed, before)


def test_her_copy_of_the_domain_names_home_and_her_node_only(fed):
    """Her namespace's dtDomain tells her where home is and what her node is, not where the
    other members' nodes listen (the home copy, in alice's namespace, lists them all)."""
    result = fed.mallory("get", "dtdomain", "mydomain", "-o", "json")
    assert result.returncode == 0, result.stderr
    members = [(m["name"], m["address"]) for m in json.loads(result.stdout)["spec"]["members"]]
    assert members == [("node0", fed.bed.node("node0").address), ("node3", fed.node3.address)]
    home = kubectl_json(fed.bed, "node0", "get", "dtdomain", "mydomain", "-n", fed.bed.node("node0").namespace)
    assert [m["name"] for m in home["spec"]["members"]] == ["node0", "node1", "node2", "node3"]


def test_a_dtservice_naming_a_domain_she_is_not_in_gets_a_status_only(fed, leftovers):
    leftovers.append("dtservice/privnet")
    before = snapshot(fed.bed)
    made = fed.mallory("apply", "-f", "-", stdin=service_manifest("privnet", pod=ATTACKER_POD, domain="private"))
    assert made.returncode == 0, made.stderr
    wait_for(lambda: status_of(fed.bed, "node3", "privnet") == "DomainNotFound", timeout=90,
             what="DomainNotFound on her own object")
    assert events_of(fed.bed, "node3", "privnet"), "the reason is an Event on her object"
    assert_unhurt(fed, before, own={"privnet"})


def test_the_victims_namespaces_are_out_of_reach(fed):
    before = snapshot(fed.bed)
    for node, _user, _role, pod in VICTIMS:
        ns = fed.bed.node(node).namespace
        assert_forbidden(fed.mallory("delete", "dtservice", NETWORK, namespace=ns), f"delete in {node}")
        assert_forbidden(fed.mallory("patch", "dtservice", NETWORK, "--type=merge", "-p",
                                     json.dumps({"spec": {"podSelector": ATTACKER_POD}}), namespace=ns),
                         f"patch in {node}")
        assert_forbidden(fed.mallory("apply", "-f", "-", stdin=service_manifest("intruder", pod=ATTACKER_POD),
                                     namespace=ns), f"create in {node}")
        key = contract.key_secret_name(ns, NETWORK)
        assert_forbidden(fed.mallory("get", "secret", key, namespace=contract.KEYS_NAMESPACE),
                         f"read the key of {node}")
        assert_forbidden(fed.mallory("delete", "secret", key, namespace=contract.KEYS_NAMESPACE),
                         f"delete the key of {node}")
        assert_forbidden(fed.mallory("label", "pod", pod, "sid.sightline.dtservice.x=client", namespace=ns),
                         f"label a pod in {node}")
    assert_unhurt(fed, before)


# ------------------------------------------------------------------ forged provisioner fields


def forge(fed: Federation, patch: dict) -> subprocess.CompletedProcess:
    done = fed.mallory("patch", "dtservice", NETWORK, "--type=merge", "-p", json.dumps(patch))
    assert done.returncode == 0, done.stderr
    return done


def mallory_join(fed: Federation) -> dict:
    return get(fed.bed, "node3", NETWORK)


def wait_restored(fed: Federation, honest: dict, what: str) -> None:
    """The provisioner writes her object back to what it gave her (or leaves it as is)."""
    def restored() -> bool:
        now = mallory_join(fed)
        return now["peers"] == honest["peers"] and now["spec"].get("server") == honest["spec"]["server"]
    wait_for(restored, timeout=90, what=f"her {what} to be written back")


def test_a_forged_spec_server_reaches_no_victim(fed):
    honest = mallory_join(fed)
    before = snapshot(fed.bed)
    victim_key = own_entry(get(fed.bed, "node1", NETWORK))[1]["publicKey"]
    forge(fed, {"spec": {"server": {"endpoint": "198.18.0.11:51820", "publicKey": victim_key, "peer": "0.0.0.0/0"}}})
    wait_restored(fed, honest, "spec.server")
    assert_unhurt(fed, before, own={NETWORK})


def test_her_entry_at_a_victims_address_is_not_taken(fed):
    honest = mallory_join(fed)
    address, entry = own_entry(honest)
    before = snapshot(fed.bed)
    forge(fed, {"peers": {address: None, fed.addresses["client1"]: entry}})
    wait_restored(fed, honest, "own address")
    assert get(fed.bed, "node0", NETWORK)["peers"][fed.addresses["client1"]]["publicKey"] == \
        own_entry(get(fed.bed, "node1", NETWORK))[1]["publicKey"]
    assert_unhurt(fed, before, own={NETWORK})


def test_her_entry_with_a_victims_public_key_is_not_taken(fed):
    honest = mallory_join(fed)
    address, entry = own_entry(honest)
    victim_key = own_entry(get(fed.bed, "node1", NETWORK))[1]["publicKey"]
    before = snapshot(fed.bed)
    forge(fed, {"peers": {address: {**entry, "publicKey": victim_key}}})
    wait_restored(fed, honest, "own key")
    hub = get(fed.bed, "node0", NETWORK)["peers"]
    assert [a for a, e in hub.items() if e["publicKey"] == victim_key] == [fed.addresses["client1"]]
    assert_unhurt(fed, before, own={NETWORK})


@pytest.mark.parametrize("key", ["hers", "the victim's"])
def test_a_second_entry_of_hers_at_a_victims_address_is_not_taken(fed, key):
    """Her own entry stays and a copy of it sits at the victim's address (what a forgery sent
    on a read the provisioner has since answered leaves behind)."""
    honest = mallory_join(fed)
    _address, entry = own_entry(honest)
    victim_key = own_entry(get(fed.bed, "node1", NETWORK))[1]["publicKey"]
    if key != "hers":
        entry = {**entry, "publicKey": victim_key}
    before = snapshot(fed.bed)
    forge(fed, {"peers": {fed.addresses["client1"]: entry}})
    wait_restored(fed, honest, "second entry")
    assert get(fed.bed, "node0", NETWORK)["peers"][fed.addresses["client1"]]["publicKey"] == victim_key
    assert_unhurt(fed, before, own={NETWORK})


@pytest.mark.parametrize("outside", ["100.96.1.7", "198.19.1.2", "0.0.0.0"])
def test_her_entry_outside_the_subnet_is_not_taken(fed, outside):
    honest = mallory_join(fed)
    address, entry = own_entry(honest)
    before = snapshot(fed.bed)
    forge(fed, {"peers": {address: None, outside: entry}})
    wait_restored(fed, honest, "own address")
    assert outside not in get(fed.bed, "node0", NETWORK)["peers"]
    assert_unhurt(fed, before, own={NETWORK})


def test_a_forged_server_entry_in_her_peers_reaches_no_victim(fed):
    """Her copy of the hub's entry: another key and the victim client's address for the hub."""
    honest = mallory_join(fed)
    victim_key = own_entry(get(fed.bed, "node1", NETWORK))[1]["publicKey"]
    hub_entry = honest["peers"][fed.addresses["hub-pod"]]
    before = snapshot(fed.bed)
    forge(fed, {"peers": {fed.addresses["hub-pod"]: {**hub_entry, "publicKey": victim_key},
                          fed.addresses["client2"]: hub_entry}})
    wait_restored(fed, honest, "copy of the hub's entry")
    assert_unhurt(fed, before, own={NETWORK})


def test_a_forgery_right_after_connected_reaches_no_victim(fed):
    """She leaves and joins again, and forges her entry (the victim's address and key) the
    moment the provisioner has written it, before and after Connected."""
    before = snapshot(fed.bed)
    old_key = own_entry(mallory_join(fed))[1]["publicKey"]
    left = fed.mallory("delete", "dtservice", NETWORK, "--wait=true", "--timeout=90s")
    assert left.returncode == 0, left.stderr
    wait_for(lambda: len(get(fed.bed, "node0", NETWORK)["peers"]) == 3, timeout=90, what="the hub to drop her")
    victim = own_entry(get(fed.bed, "node1", NETWORK))[1]
    made = fed.mallory("apply", "-f", "-", stdin=service_manifest(NETWORK, pod=ATTACKER_POD))
    assert made.returncode == 0, made.stderr
    forged = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and forged < 2:
        service = mallory_join(fed)
        if service and (service.get("spec") or {}).get("server") and len(service.get("peers") or {}) == 2:
            address, entry = own_entry(service)
            if entry["publicKey"] != victim["publicKey"]:
                stolen = {**entry, "publicKey": victim["publicKey"]}
                forge(fed, {"peers": {address: None, fed.addresses["client1"]: stolen}})
                forged += 1
                if service.get("status") != "Connected":
                    wait_for(lambda: status_of(fed.bed, "node3", NETWORK) == "Connected", timeout=90,
                             what="her join Connected again")
        time.sleep(0.05)
    assert forged == 2, "the provisioner wrote her entry twice"

    def her_own_entry_back() -> bool:
        # A forgery sent on a read the provisioner had already answered adds the stolen entry
        # beside her restored one: two entries of hers, which the provisioner repairs in turn.
        hers = [address for address, _entry in client_entries(mallory_join(fed))]
        return hers != [fed.addresses["client1"]] and len(hers) == 1 \
            and status_of(fed.bed, "node3", NETWORK) == "Connected"
    wait_for(her_own_entry_back, timeout=90, what="her own entry back alone and Connected")
    hub_peers = get(fed.bed, "node0", NETWORK)["peers"]
    assert hub_peers[fed.addresses["client1"]]["publicKey"] == victim["publicKey"]
    time.sleep(SETTLE)
    after = snapshot(fed.bed)
    assert {k: v for k, v in after.statuses.items() if fed.node3.namespace not in k} == \
        {k: v for k, v in before.statuses.items() if fed.node3.namespace not in k}
    assert new_events(before, after) == {}, "\n".join(before.failures_since(fed.bed))
    # The hub's interface lists her under her new key instead of her old one; the rest is as it was.
    hers = {old_key, own_entry(mallory_join(fed))[1]["publicKey"]}
    assert {pod: [r for r in rows if not (len(r) == 4 and r[1] in hers)] for pod, rows in after.wireguard.items()} \
        == {pod: [r for r in rows if not (len(r) == 4 and r[1] in hers)] for pod, rows in before.wireguard.items()}


# ------------------------------------------------------------------ key Secrets


def secret_manifest(name: str, private: bytes, *, labelled: bool, owner: str | None = None) -> str:
    """A key Secret as releases before 0.5.0 kept it in her namespace (which a pass moves to
    the keys namespace when it is her dtService's: labelled, a key, ``owner`` its uid)."""
    metadata: dict = {"name": contract.legacy_key_secret_name(name)}
    if labelled:
        metadata["labels"] = {contract.KEY_SECRET_LABEL: name, **contract.MANAGED_BY}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": contract.API_VERSION, "kind": contract.SERVICE_KIND,
                                        "name": name, "uid": owner}]
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
                       "data": {"privatekey": base64.b64encode(private).decode()}})


def her_key(fed: Federation, name: str) -> str:
    """The private key of her dtService ``name``, as the admin reads it from the keys namespace."""
    return base64.b64decode(key_secret(fed.bed, "node3", name)["data"]["privatekey"]).decode()


@pytest.mark.parametrize("labelled, private", [(False, b"not a key"), (True, b"\xff\xfe\x00garbage"),
                                               (True, b"YGrNT3Hc0+fIhBhVh6yn9QRVsYBuUv2qgjCrtFzPLH4=")])
def test_a_key_secret_she_made_first_touches_only_her_object(fed, leftovers, labelled, private):
    """An old-style key Secret she makes in her namespace before her dtService: not owned by it,
    so a pass leaves it alone and her dtService gets a key of its own."""
    name = f"keyed{int(labelled)}{len(private)}"
    leftovers += ["secret/" + contract.legacy_key_secret_name(name), f"dtservice/{name}"]
    before = snapshot(fed.bed)
    made = fed.mallory("apply", "-f", "-", stdin=secret_manifest(name, private, labelled=labelled))
    assert made.returncode == 0, made.stderr
    made = fed.mallory("apply", "-f", "-", stdin=service_manifest(name, pod=ATTACKER_POD))
    assert made.returncode == 0, made.stderr
    wait_for(lambda: status_of(fed.bed, "node3", name) is not None, timeout=90, what=f"a status on {name}")
    assert_unhurt(fed, before, own={name})
    wait_for(lambda: key_secret(fed.bed, "node3", name, check=False) is not None, timeout=60,
             what=f"a key of {name}'s own")
    assert her_key(fed, name) != private.decode(errors="replace")


def test_her_own_keys_are_out_of_her_reach(fed):
    """Her dtServices' key Secrets are in the keys namespace, where edit gives her nothing: she
    can neither read, list, rewrite nor delete them (before, she could copy her join's key
    into her hub's Secret)."""
    key = contract.key_secret_name(fed.node3.namespace, NETWORK)
    ns = contract.KEYS_NAMESPACE
    assert_forbidden(fed.mallory("get", "secret", key, namespace=ns), "read her own key")
    assert_forbidden(fed.mallory("get", "secrets", namespace=ns), "list the keys")
    assert_forbidden(fed.mallory("patch", "secret", key, "--type=merge", "-p", json.dumps({"data": {}}),
                                 namespace=ns), "rewrite her own key")
    assert_forbidden(fed.mallory("delete", "secret", key, namespace=ns), "delete her own key")


def test_an_old_style_key_secret_she_writes_later_changes_no_key(fed, leftovers):
    """A network of hers (she is its hub) provisioned, then an old-style key Secret she writes
    for it in her namespace, owned by it and holding another key (her join's would do, had she
    been able to read it): the key in the keys namespace stays, and nothing else changes."""
    leftovers += ["secret/" + contract.legacy_key_secret_name("rekeyed"), "dtservice/rekeyed"]
    made = fed.mallory("apply", "-f", "-", stdin=service_manifest("rekeyed", pod=ATTACKER_POD))
    assert made.returncode == 0, made.stderr
    wait_for(lambda: status_of(fed.bed, "node3", "rekeyed") == "Connected", timeout=90, what="her network")
    kept = her_key(fed, "rekeyed")
    before = snapshot(fed.bed)
    uid = get(fed.bed, "node3", "rekeyed")["metadata"]["uid"]
    old_style = secret_manifest("rekeyed", generate_private_key().encode(), labelled=True, owner=uid)
    made = fed.mallory("apply", "-f", "-", stdin=old_style)
    assert made.returncode == 0, made.stderr
    fed.mallory("annotate", "dtservice", "rekeyed", f"poke={time.time()}", "--overwrite")  # a pass for node3
    time.sleep(SETTLE)
    assert her_key(fed, "rekeyed") == kept
    assert_unhurt(fed, before, own={"rekeyed"})
    assert status_of(fed.bed, "node3", "rekeyed") == "Connected"


# ------------------------------------------------------------------ pods


def test_a_host_network_pod_is_refused(fed, leftovers):
    leftovers += ["pod/hostpod", "dtservice/hostnet"]
    node0_links = set(subprocess.run(["ip", "-n", fed.bed.node("node0").netns, "-br", "link"], capture_output=True,
                                     text=True, check=True).stdout.split())
    before = snapshot(fed.bed)
    manifest = fed.bed.pod_manifest("node3", "hostpod")
    manifest["spec"]["hostNetwork"] = True
    made = fed.mallory("apply", "-f", "-", stdin=json.dumps(manifest))
    assert made.returncode == 0, made.stderr
    made = fed.mallory("apply", "-f", "-", stdin=service_manifest("hostnet", pod="hostpod"))
    assert made.returncode == 0, made.stderr
    wait_for(lambda: status_of(fed.bed, "node3", "hostnet") == "PodRefused", timeout=120, what="PodRefused")
    assert_unhurt(fed, before, own={"hostnet"})
    after_links = subprocess.run(["ip", "-n", fed.bed.node("node0").netns, "-br", "link"], capture_output=True,
                                 text=True, check=True).stdout
    assert {w for w in after_links.split() if w.startswith("dt")} <= node0_links, "nothing on the machine's network"


def test_a_pod_selector_naming_a_victims_pod_finds_none(fed, leftovers):
    leftovers.append("dtservice/crossns")
    before = snapshot(fed.bed)
    invalid = fed.mallory("apply", "-f", "-",
                          stdin=service_manifest("crossns", pod=f"{fed.bed.node('node0').namespace}/hub-pod"))
    assert invalid.returncode != 0 and "Invalid" in invalid.stderr, invalid.stderr
    made = fed.mallory("apply", "-f", "-", stdin=service_manifest("crossns", pod="hub-pod"))
    assert made.returncode == 0, made.stderr
    wait_for(lambda: status_of(fed.bed, "node3", "crossns") == "WaitingForPod", timeout=90, what="WaitingForPod")
    assert_unhurt(fed, before, own={"crossns"})


# ------------------------------------------------------------------ the victims' traffic


def test_zz_the_victims_lost_no_packet(fed):
    """Last: the victims' pings ran through every attack above."""
    results = {loop.what: loop.stop() for loop in fed.pings}
    for what, (sent, lost) in results.items():
        print(f"{what}: {sent} sent, lost {lost}")
    assert all(sent > 10 for sent, _lost in results.values()), results
    assert {what: lost for what, (_sent, lost) in results.items() if lost} == {}
