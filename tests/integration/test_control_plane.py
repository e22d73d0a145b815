"""The control plane against real API servers: the seed's objects, its `kubectl describe` shape,
idempotence, key secrecy, bad input, concurrent joins, least privilege, two clusters.

Tests run in file order and share three module beds, started one after the other (a new
bed stops the previous one): the seed's 3-node federation, a 6-node one for concurrent
joins, and a 3-node federation spread over 2 API servers. Each test says what it proves.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import peer_id
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import generate_private_key, public_key_of
from conftest import ROOT, key_secret, recap, run_playbook, write_inventory
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.integration

GROUP, VERSION = "sid.sightlineinnovation.com", "v1"
PREFIX = "sid.sightline.dtservice."
KEY_RE = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$")
LABEL_RE = re.compile(r"^sid\.sightline\.dtservice\.[0-9a-f]{32}$")
SEED_COPY = Path(__file__).parent / "data" / "seed_dtservices.txt"
SHARED_SEED = ROOT.parent / "shared" / "seed" / "000_7686ad7f9d22719f.txt"
SEED_PODS = [("node0", "my-pod"), ("node1", "service-pod"), ("node2", "worker-pod")]
WORKING_KINDS = "dtservices,dtdomains,secrets,pods"
SERVER_ENDPOINT = "198.18.0.10:51820"
NETWORK = "100.96.0.0/24"


# -- helpers ----------------------------------------------------------------------------------

def start_bed(bed_factory, **kwargs):
    """A bed of this module; conftest gives it a network-namespace prefix of its own, so beds of
    other test runs on the machine are neither seen nor touched."""
    return bed_factory(**kwargs)


def env_of(bed) -> dict:
    return {"DTSERVICE_TESTBED_PREFIX": getattr(bed, "prefix", "dtfed-")}


def deploy(bed, *extra: str, inventory: str | None = None, check: bool = True, env: dict | None = None):
    """deploy.yml on the bed; with inventories/local unless told. The reconciler daemon stays
    off (test_daemon_e2e.py covers it): here every write and every revert must be the run's."""
    if inventory is None:
        extra = ("-e", "dtservice_daemon_enabled=false", *extra)
    return run_playbook(bed, "playbooks/deploy.yml", *extra, inventory=inventory, check=check,
                        env={**env_of(bed), **(env or {})})


def admin(bed, node: str, *args: str, check: bool = True, stdin: str | None = None):
    return bed.kubectl(bed.node(node), *args, admin=True, check=check, stdin=stdin)


def get_json(bed, node: str, *args: str) -> dict:
    return json.loads(admin(bed, node, "get", *args, "-n", bed.node(node).namespace, "-o", "json").stdout)


def service(bed, node: str, name: str = "myservice") -> dict:
    return get_json(bed, node, "dtservice", name)


def apply(bed, node: str, obj: dict) -> None:
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": bed.node(node).namespace}}
    admin(bed, node, "apply", "-f", "-", stdin=json.dumps(obj))


def dtservice(name: str, domain: str, pod: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "dtService", "metadata": {"name": name},
            "spec": {"domainSelector": domain, "podSelector": pod}}


def own_entry(obj: dict) -> tuple[str, dict] | None:
    """The (address, entry) a dtService lists for itself: the one labelled with its own id."""
    key = PREFIX + peer_id(uid=obj["metadata"]["uid"])
    found = [(a, e) for a, e in (obj.get("peers") or {}).items() if key in (e.get("labels") or {})]
    assert len(found) <= 1, f"{obj['metadata']['name']} lists itself twice: {found}"
    return found[0] if found else None


def role(entry: dict) -> str:
    (value,) = entry["labels"].values()
    return value


def private_key(bed, node: str, name: str = "myservice") -> str:
    secret = key_secret(bed, node, name)
    return base64.b64decode(secret["data"]["privatekey"]).decode()


def events_for(bed, node: str, name: str) -> list[dict]:
    items = get_json(bed, node, "events")["items"]
    return [e for e in items if e["involvedObject"].get("kind") == "dtService" and e["involvedObject"]["name"] == name]


def versions(bed, nodes=None, kinds: str = WORKING_KINDS) -> dict[str, str]:
    """resourceVersion of every object of these kinds in the node namespaces, and with secrets
    the nodes' key Secrets in the keys namespace."""
    found = {}
    for node in nodes or [n.name for n in bed.nodes]:
        items = get_json(bed, node, kinds)["items"]
        if "secrets" in kinds.split(","):
            items += json.loads(admin(bed, node, "get", "secrets", "-n", contract.KEYS_NAMESPACE, "-o", "json", "-l",
                                      f"{contract.KEY_NAMESPACE_LABEL}={bed.node(node).namespace}").stdout)["items"]
        for item in items:
            found[f"{node}/{item['kind']}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return found


WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
OUR_RESOURCES = {"dtservices", "dtdomains", "pods", "secrets", "events", "customresourcedefinitions",
                 "clusterroles", "rolebindings"}


def write_requests(bed) -> dict[str, float]:
    """Writes the API server has served, by verb and resource, from its own /metrics
    (apiserver_request_total), for the kinds the provisioner touches."""
    counts: dict[str, float] = {}
    for line in admin(bed, bed.nodes[0].name, "get", "--raw", "/metrics").stdout.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("verb") in WRITE_VERBS and labels.get("resource") in OUR_RESOURCES:
                key = f"{labels['verb']} {labels['resource']}"
                counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def list_requests(bed) -> dict[str, float]:
    """LISTs the API server has served of the provisioner's kinds, by resource and scope
    (``cluster`` or ``namespace``), from its own /metrics."""
    counts: dict[str, float] = {}
    for line in admin(bed, bed.nodes[0].name, "get", "--raw", "/metrics").stdout.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("verb") == "LIST" and labels.get("resource") in OUR_RESOURCES:
                key = f"{labels['resource']} {labels.get('scope')}"
                counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def pod_dtservice_labels(bed, node: str, pod: str) -> dict[str, str]:
    labels = get_json(bed, node, "pod", pod)["metadata"].get("labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(PREFIX)}


def check_network(bed, name: str, members: list[str], *, contiguous: bool = True) -> dict:
    """The invariants of one network: one server at .1, every member's own address distinct,
    the server's table exactly the members' own entries, each client's peers = server + itself,
    spec.server pointing at the server. Returns {node: address}."""
    objs = {n: service(bed, n, name) for n in members}
    own = {n: own_entry(o) for n, o in objs.items()}
    assert all(own.values()), f"{name}: members without an address: {[n for n, e in own.items() if not e]}"
    servers = [n for n, (_address, e) in own.items() if role(e) == "server"]
    assert len(servers) == 1, f"{name}: servers {servers}"
    server = servers[0]
    addresses = [a for a, _entry in own.values()]
    assert len(set(addresses)) == len(addresses), f"{name}: shared addresses {sorted(addresses)}"
    table = objs[server]["peers"]
    assert table == dict(own.values()), f"{name}: server table differs from the members' own entries"
    hub_address = own[server][0]
    subnet = ipaddress.ip_network(f"{hub_address}/24", strict=False) if contiguous else None
    if contiguous:
        assert hub_address.endswith(".1")
        assert sorted(ipaddress.ip_address(a) for a in addresses) == \
            [subnet.network_address + i for i in range(1, len(members) + 1)]
    for node, obj in objs.items():
        if node == server:
            assert "server" not in obj["spec"]
            continue
        assert obj["peers"] == {hub_address: table[hub_address], own[node][0]: own[node][1]}
        assert obj["spec"]["server"]["publicKey"] == table[hub_address]["publicKey"]
        assert ipaddress.ip_address(own[node][0]) in ipaddress.ip_network(obj["spec"]["server"]["peer"])
    return {n: a for n, (a, _entry) in own.items()}


# -- `kubectl describe` structure -------------------------------------------------------------

# Where each key of the seed's describe output sits. The seed file lost its indentation, so its
# lines are placed with this tree (the seed's object: peers map IPv4 -> {labels, publicKey};
# spec {domainSelector, podSelector, server {endpoint, peer, publicKey}}); ours are parsed from
# kubectl's real indentation and must come out the same.
SEED_LAYOUT = {
    "Name": None, "Namespace": None, "Labels": None, "Annotations": None, "API Version": None, "Kind": None,
    "Metadata": {"Creation Timestamp": None, "Generation": None, "Resource Version": None, "Self Link": None,
                 "UID": None},
    "Peers": {"<ip>": {"Labels": {"<label>": None}, "Public Key": None}},
    "Spec": {"Domain Selector": None, "Pod Selector": None,
             "Server": {"Endpoint": None, "Peer": None, "Public Key": None}},
    "Status": None, "Events": None,
}
LINE_RE = re.compile(r"^( *)([^:]+):(?:\s+(.*?))?\s*$")
FORMATS = {
    "Creation Timestamp": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
    "Generation": r"[1-9]\d*",
    "Resource Version": r"\d+",
    "UID": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "Public Key": KEY_RE.pattern.strip("^$"),
    "Endpoint": r"\d{1,3}(\.\d{1,3}){3}:\d{1,5}",
}


def norm(key: str) -> str:
    try:
        ipaddress.IPv4Address(key)
        return "<ip>"
    except ValueError:
        return "<label>" if LABEL_RE.match(key) else key


class Field(SimpleNamespace):
    key: str
    raw: str
    value: str | None
    children: list


def parse_ours(text: str) -> list[Field]:
    root: list[Field] = []
    stack: list[tuple[int, list[Field]]] = [(-1, root)]
    for line in text.splitlines():
        if not line.strip():
            continue
        match = LINE_RE.match(line)
        assert match, f"not a describe line: {line!r}"
        indent, raw, value = len(match[1]), match[2], match[3]
        while stack[-1][0] >= indent:
            stack.pop()
        node = Field(key=norm(raw), raw=raw, value=value or None, children=[])
        stack[-1][1].append(node)
        stack.append((indent, node.children))
    return root


def parse_seed(lines: list[str]) -> list[Field]:
    root: list[Field] = []
    stack: list[tuple[dict, list[Field]]] = [(SEED_LAYOUT, root)]
    for line in lines:
        match = LINE_RE.match(line)
        assert match, f"not a describe line in the seed: {line!r}"
        raw, value = match[2], match[3]
        key = norm(raw)
        while key not in stack[-1][0]:
            stack.pop()
            assert stack, f"seed key {raw!r} fits nowhere in the seed's object"
        node = Field(key=key, raw=raw, value=value or None, children=[])
        stack[-1][1].append(node)
        if stack[-1][0][key] is not None:
            stack.append((stack[-1][0][key], node.children))
    return root


def seed_describe_blocks() -> list[list[Field]]:
    text = SEED_COPY.read_text()
    if SHARED_SEED.exists():
        assert SHARED_SEED.read_text() == text, "tests/integration/data/seed_dtservices.txt drifted from the seed"
    blocks = []
    for chunk in text.split("$ kubectl describe dtservices")[1:]:
        lines = chunk.strip().splitlines()
        end = next(i for i, line in enumerate(lines) if line.startswith("Events:"))
        blocks.append(parse_seed(lines[:end + 1]))
    return blocks


def check_values(field: Field, path: str, expected: dict[str, str]) -> None:
    """A leaf of ours against the seed: the value the seed shows, or the seed's format."""
    if field.key in FORMATS:
        assert re.fullmatch(FORMATS[field.key], field.value or ""), f"{path}: {field.value!r}"
    elif field.key == "<label>":
        assert field.value in ("server", "client"), f"{path}: {field.value!r}"
    elif field.children or field.value is None:
        pass
    else:
        assert field.value == expected.get(path, expected.get(field.key)), \
            f"{path}: {field.value!r}, expected {expected.get(path, expected.get(field.key))!r}"


def compare(seed: list[Field], ours: list[Field], expected: dict[str, str], path: str = "") -> None:
    """Same keys in the same order at every level. Under Peers, every address of ours has the
    shape of the seed's (the seed shows a server before anyone joined)."""
    seed = [f for f in seed if f.key != "Self Link"]  # removed from Kubernetes in 1.20
    if seed and all(f.key == "<ip>" for f in seed):
        assert ours and all(f.key == "<ip>" for f in ours), f"{path}: {[f.raw for f in ours]}"
        assert [f.raw for f in ours] == sorted((f.raw for f in ours), key=ipaddress.IPv4Address)
        for field in ours:
            compare(seed[0].children, field.children, expected, f"{path}/{field.raw}")
        return
    assert [f.key for f in ours] == [f.key for f in seed], f"{path or '/'}: keys differ"
    for mine, theirs in zip(ours, seed, strict=True):
        here = f"{path}/{mine.key}"
        assert (mine.value is None) == (theirs.value is None), here
        if mine.key in FORMATS:
            assert re.fullmatch(FORMATS[mine.key], theirs.value), f"the seed's {here} is {theirs.value!r}"
        check_values(mine, here, expected)
        compare(theirs.children, mine.children, expected, here)


def child(fields: list[Field], *keys: str) -> Field:
    for key in keys:
        field = next(f for f in fields if key in (f.key, f.raw))
        fields = field.children
    return field


def check_relations(block: list[Field]) -> None:
    """What the seed's blocks show beyond shape: the server at .1, a client's Spec.Server
    carries the server's key and a network holding every peer."""
    peers = child(block, "Peers").children
    by_ip = {f.raw: f for f in peers}
    first = min(by_ip, key=ipaddress.IPv4Address)
    assert first.endswith(".1") and child(by_ip[first].children, "Labels").children[0].value == "server"
    spec = child(block, "Spec").children
    if any(f.key == "Server" for f in spec):
        server = child(spec, "Server").children
        assert child(server, "Public Key").value == child(by_ip[first].children, "Public Key").value
        network = ipaddress.ip_network(child(server, "Peer").value)
        assert all(ipaddress.ip_address(ip) in network for ip in by_ip)


def test_every_status_the_reconciler_writes_is_one_the_crd_accepts():
    """The reconciler maps any other failure to Failed; its list must be the CRD's enum, or a
    status write would be refused (422) and stop the node's other dtServices."""
    import yaml
    from ansible_collections.sightline.dtservice.plugins.module_utils.contract import STATES

    crd = yaml.safe_load((ROOT / "roles/dtservice_cluster/files" / f"dtservices.{GROUP}.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert set(schema["properties"]["status"]["enum"]) == set(STATES)


# -- bed 1: the seed's federation (inventories/local) ------------------------------------------

def cluster_state(bed) -> dict:
    """What deploy could make on the bed's cluster: CRDs, namespaces, RBAC of ours, processes."""
    names = {kind: admin(bed, "node0", "get", kind, "-o", "name", *scope).stdout.split()
             for kind, scope in [("customresourcedefinitions", ()), ("namespaces", ()), ("clusterroles", ()),
                                 ("clusterrolebindings", ()), ("rolebindings", ("--all-namespaces",))]}
    names["ours"] = sorted(n for kind, found in names.items() for n in found if "dtservice" in n or "sightline" in n)
    return names


@pytest.fixture(scope="module")
def previewed(bed_factory):
    """`deploy.yml --check --diff` on the bed before anything of ours exists on it: no CRD, no
    RBAC, no dtDomain (the daemon's role included, as a user runs it)."""
    bed = start_bed(bed_factory)
    for node, pod in SEED_PODS:
        bed.create_pod(node, pod)
    before = cluster_state(bed)
    result = run_playbook(bed, "playbooks/deploy.yml", "--check", "--diff", check=False, env=env_of(bed))
    return SimpleNamespace(bed=bed, before=before, after=cluster_state(bed), result=result)


def test_check_mode_on_a_new_federation_previews_every_object_and_creates_none(previewed):
    """Item 4 of issue 15: the preview fails nothing, names every object deploy would create
    (CRDs, the provisioner's and the tenants' RBAC, each node's binding, the dtDomains, the
    declared dtServices), and leaves the cluster as it was: no CRD, no namespace, no RBAC,
    no daemon."""
    result, bed = previewed.result, previewed.bed
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    counts = recap(result.stdout)
    assert counts and all(c["failed"] == 0 for c in counts.values()), counts
    assert previewed.before["ours"] == [] and previewed.after == previewed.before
    assert not (bed.dir / "reconciler" / "reconciler.pid").exists()
    shown = set(re.findall(r"^\+\+\+ after: (.+)$", result.stdout, flags=re.M))
    expected = {f"CustomResourceDefinition {kind}.{GROUP}" for kind in ("dtservices", "dtdomains")}
    roles = ("dtservice-provisioner", "dtservice-provisioner-reader", "dtservice-tenant", "dtservice-tenant-edit",
             "dtservice-tenant-view")
    expected |= {f"ClusterRole {name}" for name in roles}
    expected |= {"ClusterRoleBinding dtservice-provisioner-reader"}
    for node, _pod in SEED_PODS:
        namespace = bed.node(node).namespace
        expected |= {f"RoleBinding {namespace}/dtservice-provisioner", f"dtDomain {namespace}/mydomain",
                     f"dtService {namespace}/myservice"}
    assert expected <= shown, sorted(expected - shown)


@pytest.fixture(scope="module")
def seeded(previewed):
    bed = previewed.bed
    deploy(bed)
    return bed


def test_seed_network_is_created_and_joined_with_the_seeds_objects(seeded):
    """node0 creates myservice, node1 and node2 join: server .1, clients .2/.3, spec.server,
    peers tables and pod labels as the seed describes them, keys matching the Secrets."""
    bed = seeded
    objs = {node: service(bed, node) for node, _pod in SEED_PODS}
    keys = {node: public_key_of(private_key(bed, node)) for node, _pod in SEED_PODS}
    own = {node: own_entry(obj) for node, obj in objs.items()}
    server = objs["node0"]
    assert own["node0"][0] == "100.96.0.1" and role(own["node0"][1]) == "server"
    assert own["node0"][1]["publicKey"] == keys["node0"]
    assert sorted(server["peers"]) == ["100.96.0.1", "100.96.0.2", "100.96.0.3"]
    assert sorted([own["node1"][0], own["node2"][0]]) == ["100.96.0.2", "100.96.0.3"]
    assert "server" not in server["spec"]
    ids = set()
    for node, pod in SEED_PODS:
        address, entry = own[node]
        assert server["peers"][address] == entry, f"{node}: server table and own entry differ"
        assert entry["publicKey"] == keys[node]
        (label,) = entry["labels"]
        assert LABEL_RE.match(label)
        ids.add(label)
        assert role(entry) == ("server" if node == "node0" else "client")
        assert pod_dtservice_labels(bed, node, pod) == entry["labels"], f"{pod} labels"
        assert objs[node]["spec"]["domainSelector"] == "mydomain" and objs[node]["spec"]["podSelector"] == pod
        assert objs[node]["status"] == "Connected"
        if node != "node0":
            assert objs[node]["spec"]["server"] == {"endpoint": SERVER_ENDPOINT, "peer": NETWORK,
                                                    "publicKey": keys["node0"]}
            assert objs[node]["peers"] == {"100.96.0.1": server["peers"]["100.96.0.1"], address: entry}
    assert len(ids) == 3, "every peer has its own sid.sightline.dtservice.<id> label"


def test_describe_prints_the_seeds_shape(seeded):
    """`kubectl describe dtservices` of the server and of both clients has the seed's keys, in
    the seed's order and nesting, with the seed's values or value formats (Self Link aside)."""
    bed = seeded
    seed_server, seed_client, seed_eth = seed_describe_blocks()
    for block in (seed_server, seed_client, seed_eth):
        check_relations(block)
    common = {"Labels": "<none>", "Annotations": "<none>", "API Version": f"{GROUP}/{VERSION}",
              "Kind": "dtService", "Name": "myservice", "Events": "<none>", "Status": "Connected",
              "/Spec/Domain Selector": "mydomain", "/Spec/Server/Peer": NETWORK}
    # The seed's values where they are the same objects: names, namespaces, selectors, status.
    assert child(seed_server, "Namespace").value == "dtaas-node0-dtaas"
    assert child(seed_client, "Namespace").value == "dtaas-node1-dtaas"
    for node, pod, seed in [("node0", "my-pod", seed_server), ("node1", "service-pod", seed_client),
                            ("node2", "worker-pod", seed_client)]:
        text = admin(bed, node, "describe", "dtservices", "-n", bed.node(node).namespace).stdout
        # Every pass, deploy's as the daemon's, adds the teardown finalizer: a line the seed has not.
        text, held = re.subn(r"^  Finalizers:\n    sid\.sightlineinnovation\.com/teardown\n", "", text, flags=re.M)
        assert held == 1, text
        ours = parse_ours(text)
        expected = {**common, "Namespace": bed.node(node).namespace, "/Spec/Pod Selector": pod}
        if node != "node2":
            assert child(seed, "Spec", "Pod Selector").value == pod
            assert child(seed, "Spec", "Domain Selector").value == "mydomain"
            assert child(seed, "Status").value == "Connected" and child(seed, "Events").value == "<none>"
        compare(seed, ours, expected)
        check_relations(ours)
        if node == "node0":
            compare(seed_eth, ours, expected)
            assert [f.raw for f in child(ours, "Peers").children] == ["100.96.0.1", "100.96.0.2", "100.96.0.3"]
        else:
            assert child(ours, "Spec", "Server", "Endpoint").value == SERVER_ENDPOINT


def test_provisioner_has_only_its_node_namespace_rights(seeded):
    """The deploy's node kubeconfig is the provisioner (CN dtservice-provisioner, no groups); it
    can do its job in node namespaces, read its own kinds cluster-wide, keep the key Secrets in
    the keys namespace, and nothing else cluster-wide or elsewhere."""
    bed = seeded
    node = bed.node("node0")
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "-i", str(ROOT / "inventories/local"), "node0",
         "-m", "ansible.builtin.debug", "-a", "var=dtservice_node_kubeconfig"],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "DTSERVICE_TESTBED_DIR": str(bed.dir), **env_of(bed)})
    assert f'"dtservice_node_kubeconfig": "{node.kubeconfig}"' in shown.stdout, shown.stdout
    who = json.loads(bed.kubectl(node, "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "dtservice-provisioner"
    assert who["status"]["userInfo"].get("groups") == ["system:authenticated"]

    def can(*args: str) -> bool:
        answer = bed.kubectl(node, "auth", "can-i", *args, check=False)
        assert answer.stdout.strip() in ("yes", "no"), answer.stderr
        return answer.stdout.strip() == "yes"

    for ns in (n.namespace for n in bed.nodes):
        assert can("update", f"dtservices.{GROUP}", "--subresource=status", "-n", ns)
        assert can("update", f"dtdomains.{GROUP}", "--subresource=status", "-n", ns)
        # Of Secrets only an earlier release's key, read and deleted when it is moved.
        assert can("get", "secrets", "-n", ns) and can("delete", "secrets", "-n", ns)
        assert can("patch", "pods", "-n", ns)
        assert can("create", "events", "-n", ns)
    keys = ("-n", contract.KEYS_NAMESPACE)
    assert can("list", "secrets", *keys) and can("create", "secrets", *keys)
    assert can("update", "secrets", *keys)  # a key rotation's commit is one write
    assert can("list", f"dtservices.{GROUP}", "--all-namespaces")
    assert can("list", f"dtdomains.{GROUP}", "--all-namespaces")
    denied = [
        ("list", "secrets", "-n", node.namespace),
        ("create", "secrets", "-n", node.namespace),
        ("update", "secrets", "-n", node.namespace),
        ("patch", "secrets", *keys),
        ("create", "pods", *keys),
        ("list", "pods", "--all-namespaces"),
        ("get", f"dtservices.{GROUP}", "--subresource=status", "-n", "default"),
        ("delete", f"dtdomains.{GROUP}", "-n", "default"),
        ("list", "secrets", "--all-namespaces"),
        ("get", "secrets", "-n", "default"),
        ("get", "secrets", "-n", "kube-system"),
        ("delete", "namespaces"),
        ("create", "namespaces"),
        ("update", f"dtservices.{GROUP}", "-n", "default"),
        ("create", "pods", "-n", "kube-system"),
        ("delete", "pods", "-n", node.namespace),
        ("create", "rolebindings", "-n", node.namespace),
        ("create", "clusterrolebindings"),
        ("update", "customresourcedefinitions"),
        ("escalate", "clusterroles"),
    ]
    allowed = [args for args in denied if can(*args)]
    assert allowed == [], f"the provisioner may {allowed}"


@pytest.fixture(scope="module")
def rerun(seeded, tmp_path_factory):
    """The second run of deploy.yml on the converged seed federation, as verbose as it gets:
    -vvvv and --diff, a JSON fact cache and a log file. Private keys are read first."""
    bed = seeded
    privates = {node: private_key(bed, node) for node, _pod in SEED_PODS}
    before = versions(bed, kinds=WORKING_KINDS + ",events")
    writes_before, lists_before = write_requests(bed), list_requests(bed)
    where = tmp_path_factory.mktemp("rerun")
    cache, log = where / "facts", where / "ansible.log"
    cache.mkdir()
    result = deploy(bed, "-vvvv", "--diff", env={"ANSIBLE_CACHE_PLUGIN": "jsonfile",
                                                 "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache),
                                                 "ANSIBLE_LOG_PATH": str(log)})
    # The run's own LISTs: counted before versions() lists every kind of every namespace.
    lists = {key: n - lists_before.get(key, 0) for key, n in list_requests(bed).items() if n > lists_before.get(key, 0)}
    after = versions(bed, kinds=WORKING_KINDS + ",events")
    return SimpleNamespace(bed=bed, privates=privates, before=before, after=after, result=result, cache=cache,
                           log=log, writes_before=writes_before, writes_after=write_requests(bed), lists=lists)


def test_second_run_changes_nothing(rerun):
    """Re-running deploy.yml on the converged federation: changed=0 on every host, not one
    object (dtServices, dtDomains, Secrets, Pods, Events) written, and not one write request
    (not even a no-op PATCH) of the provisioner's kinds served by the API server."""
    counts = recap(rerun.result.stdout)
    assert counts and all(c["changed"] == 0 for c in counts.values()), counts
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), counts
    assert rerun.after == rerun.before
    assert rerun.writes_after == rerun.writes_before


def test_a_converged_pass_lists_the_projects_kinds_once_per_cluster(rerun):
    """Item 2 of issue 15: the no-op deploy reads dtServices and dtDomains with LISTs of the
    whole cluster (one per module call), never namespace by namespace."""
    lists = rerun.lists
    assert {key for key in lists if key.split()[0] in ("dtservices", "dtdomains")} <= \
        {"dtservices cluster", "dtdomains cluster", "dtservices resource", "dtdomains resource"}, lists
    assert lists.get("dtservices cluster", 0) <= 5 and lists.get("dtdomains cluster", 0) <= 5, lists


def test_a_converged_pass_lists_pods_once_per_kubernetes_node_as_its_kubelet(rerun):
    """With each node's kubelet kubeconfig (inventories/local), the no-op deploy reads pods
    with one field-selected LIST per Kubernetes node, at the cluster's scope (the Node
    authorizer allows a kubelet that LIST and no wider one), never namespace by namespace."""
    lists = rerun.lists
    assert "pods namespace" not in lists, lists
    assert 1 <= lists.get("pods cluster", 0) <= len(rerun.bed.nodes), lists


def test_a_kubelet_credential_that_may_not_list_the_pods_leaves_them_to_the_namespace_list(seeded):
    """Given another Kubernetes node's kubelet kubeconfig, a pass's pod listing is refused by
    the API server and falls back to the provisioner's LIST of the namespace, once per call
    (the refusal is remembered): the same pods as with the node's own kubelet, and as kubectl
    lists them."""
    from dataclasses import replace

    from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster

    bed = seeded
    node, other = bed.node("node1"), bed.node("node0")
    own = NodeRef(name=node.name, namespace=node.namespace, address=node.address, kubeconfig=node.kubeconfig,
                  kubelet_nodes=(node.kubelet_node,), kubelet_kubeconfig=node.kubelet_kubeconfig)
    expected = {p["metadata"]["name"] for p in get_json(bed, "node1", "pods")["items"]}
    assert "service-pod" in expected
    as_own_kubelet = Cluster()
    assert set(as_own_kubelet.list_pods(own)) == expected
    assert as_own_kubelet.connections.kubelet_listing(node.kubelet_kubeconfig, node.kubelet_node) is not None
    borrowed = replace(own, kubelet_kubeconfig=other.kubelet_kubeconfig)
    refused = Cluster()
    assert set(refused.list_pods(borrowed)) == expected
    assert refused.connections.kubelet_listing(other.kubelet_kubeconfig, node.kubelet_node) is None


def test_a_pass_reads_the_key_secrets_of_a_cluster_with_one_list(seeded):
    """Item 2 of issue 15 for key Secrets: every node's keys come from one LIST of its
    cluster's keys namespace per module call, and each node gets its own dtServices' only."""
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster

    bed = seeded
    refs = [contract.NodeRef(name=n.name, namespace=n.namespace, address=n.address, kubeconfig=n.kubeconfig)
            for n in bed.nodes]
    assert len({ref.kubeconfig for ref in refs}) == 1, "one provisioner kubeconfig for the bed's one cluster"
    cluster = Cluster()
    api = cluster.connections.api(refs[0])
    sent, request = [], api.request

    def counted(method: str, path: str, **options):
        sent.append((method, path))
        return request(method, path, **options)

    api.request = counted
    found = {ref.name: cluster.key_secrets(ref) for ref in refs}
    assert sent == [("GET", f"/api/v1/namespaces/{contract.KEYS_NAMESPACE}/secrets")]
    for ref in refs:
        assert list(found[ref.name]) == ["myservice"], ref.name
        owner = found[ref.name]["myservice"]["metadata"]["annotations"][contract.OWNER_UID_ANNOTATION]
        assert owner == service(bed, ref.name)["metadata"]["uid"], ref.name


def test_private_keys_never_leave_their_secrets(rerun):
    """No private key (raw, base64'd as in the Secret, or a 40-character piece of either) shows
    in the -vvvv output, the log, the fact cache, the CRs, the Events or the control-plane logs;
    each key Secret, in the cluster's keys namespace, names its dtService's uid and none is left
    in a node namespace."""
    bed = rerun.bed
    for node, _pod in SEED_PODS:
        secret = key_secret(bed, node)
        obj = service(bed, node)
        assert secret["metadata"]["annotations"][contract.OWNER_UID_ANNOTATION] == obj["metadata"]["uid"]
        assert "ownerReferences" not in secret["metadata"]
        assert get_json(bed, node, "secrets")["items"] == [], node
    privates = list(rerun.privates.values())
    assert all(KEY_RE.match(p) for p in privates) and len(set(privates)) == 3
    needles = set()
    for raw in privates:
        encoded = base64.b64encode(raw.encode()).decode()
        needles |= {raw, raw[:40], raw[:40].replace("/", "\\/"), raw[-40:], encoded, encoded[:40]}
    result = rerun.result
    assert "task path:" in result.stdout and '"invocation"' in result.stdout, "not verbose"
    assert rerun.log.stat().st_size > 10_000
    places = {"stdout": result.stdout, "stderr": result.stderr, "log": rerun.log.read_text()}
    for path in rerun.cache.rglob("*"):
        if path.is_file():
            places[f"cache {path.name}"] = path.read_text(errors="replace")
    for node, _pod in SEED_PODS:
        places[f"{node} CRs"] = json.dumps(get_json(bed, node, f"dtservices.{GROUP},dtdomains.{GROUP}"))
        places[f"{node} events"] = json.dumps(get_json(bed, node, "events"))
    for path in bed.dir.rglob("*.log"):
        places[str(path.relative_to(bed.dir))] = path.read_text(errors="replace")
    assert any("kube-apiserver" in p for p in places) and any("controller-manager" in p for p in places)
    leaks = [(where, n[:6]) for where, text in places.items() for n in needles if n in text]
    assert leaks == [], f"private key material found in: {sorted({w for w, _needle in leaks})}"
    # The needles do find a key where one is: the Secret itself.
    secret = json.dumps(key_secret(bed, "node0"))
    assert any(n in secret for n in needles)


def test_lookup_rejects_bad_declarations_before_anything_changes(seeded, tmp_path):
    """An unknown domain in dtservice_services, and a service on a host that is not a member,
    fail the playbook with a message that says so, and nothing on the API server changes."""
    bed = seeded
    services = {node: [{"name": "myservice", "domain": "mydomain", "pod": pod}] for node, pod in SEED_PODS}
    cases = {
        "unknown domain": (
            {**services, "node1": [*services["node1"], {"name": "extra", "domain": "nosuch", "pod": "service-pod"}]},
            None, ["'nosuch'", "not declared"]),
        "not a member": (
            services, [{"name": "mydomain", "members": ["node0", "node1"]}],
            ["node2", "is not a member", "'mydomain'"]),
    }
    before = versions(bed, kinds=WORKING_KINDS + ",events,rolebindings")
    for case, (declared, domains, words) in cases.items():
        inventory = write_inventory(bed, tmp_path / f"{case.replace(' ', '-')}.json", services=declared,
                                    domains=domains)
        result = deploy(bed, inventory=inventory, check=False)
        assert result.returncode != 0, f"{case}: the playbook passed"
        output = result.stdout + result.stderr
        assert "dtservice_plan" in output and all(w in output for w in words), f"{case}:\n{output[-3000:]}"
        assert "changed:" not in result.stdout, f"{case}: something changed before the failure"
        assert versions(bed, kinds=WORKING_KINDS + ",events,rolebindings") == before, case


def test_api_server_rejects_malformed_objects_with_field_names(seeded):
    """The CRDs' schemas make the API server answer 422 naming each bad field."""
    bed = seeded
    node = bed.node("node0")
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=node.admin_kubeconfig))
    key = public_key_of(generate_private_key())
    bad = [
        ("dtservices", {"kind": "dtService", "metadata": {"name": "no-pod"}, "spec": {"domainSelector": "mydomain"}},
         {"spec.podSelector"}),
        ("dtservices", {"kind": "dtService", "metadata": {"name": "bad-server"},
                        "spec": {"domainSelector": "mydomain", "podSelector": "my-pod",
                                 "server": {"endpoint": "nowhere", "peer": NETWORK, "publicKey": "short"}}},
         {"spec.server.endpoint", "spec.server.publicKey"}),
        ("dtservices", {"kind": "dtService", "metadata": {"name": "bad-label"},
                        "spec": {"domainSelector": "mydomain", "podSelector": "my-pod"},
                        "peers": {"100.96.0.9": {"labels": {f"{PREFIX}{'0' * 32}": "boss"}, "publicKey": key}}},
         {f"peers.100.96.0.9.labels.{PREFIX}{'0' * 32}"}),
        ("dtservices", {"kind": "dtService", "metadata": {"name": "bad-address"},
                        "spec": {"domainSelector": "mydomain", "podSelector": "my-pod"},
                        "peers": {"not-an-ip": {"labels": {f"{PREFIX}{'0' * 32}": "client"}, "publicKey": key}}},
         {"peers must be keyed by IPv4 addresses"}),
        ("dtdomains", {"kind": "dtDomain", "metadata": {"name": "bad-domain"},
                       "spec": {"members": [{"name": "node0", "namespace": node.namespace, "address": "300.1.1.1"}],
                                "pool": "banana", "subnetPrefix": 31}},
         {"spec.members[0].address", "spec.pool", "spec.subnetPrefix"}),
    ]
    before = versions(bed)
    for plural, partial, fields in bad:
        body = {"apiVersion": f"{GROUP}/{VERSION}", **partial}
        with pytest.raises(ApiException) as rejected:
            api.create_namespaced_custom_object(GROUP, VERSION, node.namespace, plural, body)
        assert rejected.value.status == 422, body["metadata"]["name"]
        causes = json.loads(rejected.value.body)["details"]["causes"]
        missing = [f for f in fields if not any(f in (c.get("field"), c.get("message", ""))
                                                or (" " in f and f in c.get("message", "")) for c in causes)]
        assert missing == [], f"{body['metadata']['name']}: {causes}"
    assert versions(bed) == before


# Declared problems: tinydomain's pool holds two /30 networks (server .1 and one client .2
# each), so a second joiner of `tiny` and a third network `tiny3` do not fit; baddomain's pool
# is no larger than its subnets (the CRD accepts it, allocation cannot); a client whose pod does
# not exist yet. node0 also serves networks of three domains, each needing its own UDP port.
PROBLEM_DOMAINS = [
    {"name": "mydomain", "members": ["node0", "node1", "node2"]},
    {"name": "tinydomain", "members": ["node0", "node1", "node2"], "pool": "100.100.0.0/29", "subnet_prefix": 30},
    {"name": "otherdomain", "members": ["node0", "node1", "node2"], "pool": "100.104.0.0/16"},
    {"name": "baddomain", "members": ["node0", "node1", "node2"], "pool": "100.108.0.0/30", "subnet_prefix": 30},
]
PROBLEM_SERVICES = {
    "node0": [{"name": "myservice", "domain": "mydomain", "pod": "my-pod"},
              {"name": "tiny", "domain": "tinydomain", "pod": "aux-pod"},
              {"name": "tiny2", "domain": "tinydomain", "pod": "aux-pod"},
              {"name": "tiny3", "domain": "tinydomain", "pod": "aux-pod"},
              {"name": "waitnet", "domain": "otherdomain", "pod": "aux-pod"}],
    "node1": [{"name": "myservice", "domain": "mydomain", "pod": "service-pod"},
              {"name": "tiny", "domain": "tinydomain", "pod": "aux-pod"},
              {"name": "waitnet", "domain": "otherdomain", "pod": "ghost-pod"},
              {"name": "badnet2", "domain": "baddomain", "pod": "aux-pod"}],
    "node2": [{"name": "myservice", "domain": "mydomain", "pod": "worker-pod"},
              {"name": "tiny", "domain": "tinydomain", "pod": "aux-pod"}],
}


@pytest.fixture(scope="module")
def problems(seeded, tmp_path_factory):
    bed = seeded
    working = versions(bed)
    for node in ("node0", "node1", "node2"):
        bed.create_pod(node, "aux-pod")
    inventory = write_inventory(bed, tmp_path_factory.mktemp("problems") / "problems.json",
                                services=PROBLEM_SERVICES, domains=PROBLEM_DOMAINS)
    result = deploy(bed, inventory=inventory, check=False)
    assert "Traceback" not in result.stdout, result.stdout[-4000:]
    return SimpleNamespace(bed=bed, working=working, inventory=inventory, first=result)


def assert_untouched(bed, baseline: dict[str, str]) -> None:
    now = versions(bed)
    changed = sorted(k for k in baseline if now.get(k) != baseline[k])
    assert changed == [], f"written although they worked: {changed}"


def only_event(bed, node: str, name: str, *, warning: bool) -> dict:
    events = events_for(bed, node, name)
    assert len(events) == 1, f"{node}/{name}: {[(e['reason'], e['message']) for e in events]}"
    assert events[0]["type"] == ("Warning" if warning else "Normal")
    assert events[0]["reason"] == service(bed, node, name)["status"]
    return events[0]


def test_full_subnet_and_full_pool_are_clear_states(problems):
    """tiny's /30 takes a server and one client: the other joiner is SubnetExhausted; the /29
    pool takes tiny and tiny2, so tiny3 is PoolExhausted; Warning Events say why; nothing of
    theirs is allocated and nothing is reused."""
    bed = problems.bed
    tiny = {node: service(bed, node, "tiny") for node in ("node0", "node1", "node2")}
    assert own_entry(tiny["node0"])[0] == "100.100.0.1"
    joined = [n for n in ("node1", "node2") if tiny[n].get("status") != "SubnetExhausted"]
    full = [n for n in ("node1", "node2") if tiny[n].get("status") == "SubnetExhausted"]
    assert len(joined) == 1 and len(full) == 1, {n: o.get("status") for n, o in tiny.items()}
    assert own_entry(tiny[joined[0]])[0] == "100.100.0.2"
    assert not tiny[full[0]].get("peers") and "server" not in tiny[full[0]]["spec"]
    check_network(bed, "tiny", ["node0", joined[0]])
    message = only_event(bed, full[0], "tiny", warning=True)["message"]
    assert "100.100.0.0/30" in message and "no free" in message
    assert own_entry(service(bed, "node0", "tiny2"))[0] == "100.100.0.5"
    tiny3 = service(bed, "node0", "tiny3")
    assert tiny3["status"] == "PoolExhausted" and not tiny3.get("peers")
    message = only_event(bed, "node0", "tiny3", warning=True)["message"]
    assert "100.100.0.0/29" in message and "/30" in message
    registry = get_json(bed, "node0", "dtdomain", "tinydomain")["status"]["networks"]
    assert {n: e["subnet"] for n, e in registry.items()} == {"tiny": "100.100.0.0/30", "tiny2": "100.100.0.4/30"}
    assert_untouched(bed, problems.working)


def test_domain_whose_pool_cannot_hold_a_network_is_a_clear_failure(problems):
    """baddomain's pool is no larger than its subnet size (the CRD lets it through): the
    dtService is Failed with a Warning Event saying why, and the node's other dtServices are
    still reconciled."""
    bed = problems.bed
    obj = service(bed, "node1", "badnet2")
    assert obj["status"] == "Failed" and not obj.get("peers")
    assert "does not fit pool 100.108.0.0/30" in only_event(bed, "node1", "badnet2", warning=True)["message"]
    assert not (get_json(bed, "node0", "dtdomain", "baddomain").get("status") or {}).get("networks")
    assert service(bed, "node1", "waitnet")["status"] == "WaitingForPod"


def test_missing_pod_waits_with_its_address_reserved(problems):
    """A client whose pod does not exist is WaitingForPod with a Normal Event naming the pod;
    its address is reserved in the server's table."""
    bed = problems.bed
    waiting = service(bed, "node1", "waitnet")
    assert waiting["status"] == "WaitingForPod"
    assert "ghost-pod" in only_event(bed, "node1", "waitnet", warning=False)["message"]
    addresses = check_network(bed, "waitnet", ["node0", "node1"])
    assert addresses == {"node0": "100.104.0.1", "node1": "100.104.0.2"}
    assert waiting["spec"]["server"]["endpoint"].startswith("198.18.0.10:")
    assert_untouched(bed, problems.working)


def test_networks_served_by_one_node_have_their_own_ports(problems):
    """node0 serves networks of three domains (myservice, tiny, tiny2, waitnet): each listens
    on a UDP port of its own on the node's address."""
    bed = problems.bed
    endpoints = {}
    for domain in ("mydomain", "tinydomain", "otherdomain"):
        for name, network in get_json(bed, "node0", "dtdomain", domain)["status"]["networks"].items():
            if network["server"]["node"] == "node0":
                endpoints[f"{domain}/{name}"] = network["endpoint"]
    assert sorted(endpoints) == ["mydomain/myservice", "otherdomain/waitnet", "tinydomain/tiny",
                                 "tinydomain/tiny2"]
    assert len(set(endpoints.values())) == 4, endpoints
    assert all(e.startswith("198.18.0.10:518") for e in endpoints.values())


@pytest.fixture(scope="module")
def kubectl_problems(problems):
    """Bad dtServices applied with kubectl, as a user of the seed would, then a deploy."""
    bed = problems.bed
    declared = versions(bed, kinds="dtservices,dtdomains")
    apply(bed, "node0", dtservice("badnet", "nosuch", "my-pod"))
    closed = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "dtDomain", "metadata": {"name": "closeddomain"},
              "spec": {"members": [{"name": n.name, "namespace": n.namespace, "address": n.address}
                                   for n in bed.nodes if n.name != "node2"]}}
    apply(bed, "node2", closed)
    apply(bed, "node2", dtservice("outsider", "closeddomain", "worker-pod"))
    apply(bed, "node2", dtservice("waitnet", "tinydomain", "aux-pod"))
    result = deploy(bed, inventory=problems.inventory, check=False)
    assert "Traceback" not in result.stdout, result.stdout[-4000:]
    return SimpleNamespace(bed=bed, declared=declared, working=problems.working, result=result,
                           problems_inventory=problems.inventory)


def test_unknown_domain_is_domain_not_found(kubectl_problems):
    bed = kubectl_problems.bed
    obj = service(bed, "node0", "badnet")
    assert obj["status"] == "DomainNotFound"
    assert not obj.get("peers") and "server" not in obj["spec"]
    assert "'nosuch'" in only_event(bed, "node0", "badnet", warning=True)["message"]


def test_non_member_is_not_a_member(kubectl_problems):
    bed = kubectl_problems.bed
    obj = service(bed, "node2", "outsider")
    assert obj["status"] == "NotAMember"
    assert not obj.get("peers") and "server" not in obj["spec"]
    message = only_event(bed, "node2", "outsider", warning=True)["message"]
    assert "node2" in message and "closeddomain" in message
    assert "outsider" not in (get_json(bed, "node0", "dtdomain", "mydomain")["status"]["networks"])


def test_network_name_of_another_domain_is_taken(kubectl_problems):
    bed = kubectl_problems.bed
    obj = service(bed, "node2", "waitnet")
    assert obj["status"] == "NetworkNameTaken"
    assert not obj.get("peers")
    assert "otherdomain" in only_event(bed, "node2", "waitnet", warning=True)["message"]
    assert sorted(get_json(bed, "node0", "dtdomain", "tinydomain")["status"]["networks"]) == ["tiny", "tiny2"]
    check_network(bed, "waitnet", ["node0", "node1"])


def test_bad_input_disturbs_nothing_that_works(kubectl_problems):
    """After both bad-input runs the seed network's dtServices, dtDomains, Secrets and pods were
    never written, and the second run rewrote (and re-reported) none of the failed ones."""
    bed = kubectl_problems.bed
    assert_untouched(bed, kubectl_problems.working)
    assert_untouched(bed, kubectl_problems.declared)
    for node, name in [("node1", "waitnet"), ("node0", "tiny3"), ("node1", "badnet2")]:
        assert len(events_for(bed, node, name)) == 1
    check_network(bed, "myservice", ["node0", "node1", "node2"])


@pytest.fixture(scope="module")
def repaired(kubectl_problems):
    """A user edits provisioner-owned fields, the missing pod appears, then a deploy."""
    bed = kubectl_problems.bed
    before = {node: service(bed, node) for node, _pod in SEED_PODS}
    fake = public_key_of(generate_private_key())
    first, second = (own_entry(before[n])[0] for n in ("node1", "node2"))
    edits = {
        "node0": {"peers": {first: None, second: {"publicKey": fake},
                            "100.96.0.9": {"labels": {f"{PREFIX}{'f' * 32}": "client"}, "publicKey": fake}}},
        "node1": {"spec": {"server": {"endpoint": "198.18.0.99:1", "publicKey": fake}}},
    }
    for node, patch in edits.items():
        admin(bed, node, "patch", "dtservice", "myservice", "-n", bed.node(node).namespace, "--type", "merge",
              "-p", json.dumps(patch))
    edited = {node: service(bed, node) for node in edits}
    assert sorted(edited["node0"]["peers"]) == sorted(["100.96.0.1", second, "100.96.0.9"])
    assert edited["node1"]["spec"]["server"]["endpoint"] == "198.18.0.99:1"
    bed.create_pod("node1", "ghost-pod")
    deploy(bed, inventory=kubectl_problems.problems_inventory)
    return SimpleNamespace(bed=bed, before=before, inventory=kubectl_problems.problems_inventory)


def test_user_edits_of_peers_and_spec_server_are_reverted(repaired):
    """A hand-edited server table (a client removed, a key changed, a stranger added) and a
    hand-edited spec.server are put back exactly by the next deploy."""
    bed = repaired.bed
    for node, _pod in SEED_PODS:
        now = service(bed, node)
        assert now["peers"] == repaired.before[node]["peers"], node
        assert now["spec"] == repaired.before[node]["spec"], node
    check_network(bed, "myservice", ["node0", "node1", "node2"])


def test_waiting_client_attaches_when_its_pod_appears(repaired):
    """Once ghost-pod exists, the next run labels it and the client keeps its reserved address."""
    bed = repaired.bed
    obj = service(bed, "node1", "waitnet")
    address, entry = own_entry(obj)
    assert address == "100.104.0.2"
    assert obj["status"] != "WaitingForPod"
    assert pod_dtservice_labels(bed, "node1", "ghost-pod") == entry["labels"]
    check_network(bed, "waitnet", ["node0", "node1"])


def test_a_key_an_earlier_release_kept_in_the_node_namespace_moves_and_stays_the_same(repaired):
    """Releases before 0.5.0 kept each key Secret in its dtService's namespace, owned by it. The
    next deploy moves the key to the cluster's keys namespace, with its creation time, deletes
    the old Secret, and the network goes on with the same keys."""
    bed = repaired.bed
    node = "node2"
    namespace = bed.node(node).namespace
    current, obj = key_secret(bed, node), service(bed, node)
    annotations = {k: v for k, v in current["metadata"]["annotations"].items() if k != contract.OWNER_UID_ANNOTATION}
    old_style = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": current["data"],
                 "metadata": {"name": contract.legacy_key_secret_name("myservice"), "namespace": namespace,
                              "labels": {contract.KEY_SECRET_LABEL: "myservice", **contract.MANAGED_BY},
                              "annotations": annotations,
                              "ownerReferences": [{"apiVersion": contract.API_VERSION, "kind": contract.SERVICE_KIND,
                                                   "name": "myservice", "uid": obj["metadata"]["uid"]}]}}
    admin(bed, node, "apply", "-f", "-", stdin=json.dumps(old_style))
    admin(bed, node, "delete", "secret", current["metadata"]["name"], "-n", contract.KEYS_NAMESPACE)
    deploy(bed, inventory=repaired.inventory)
    moved = key_secret(bed, node)
    assert moved["data"] == current["data"] and moved["metadata"]["uid"] != current["metadata"]["uid"]
    assert moved["metadata"]["annotations"][contract.KEY_CREATED_ANNOTATION] == \
        annotations[contract.KEY_CREATED_ANNOTATION]
    assert moved["metadata"]["annotations"][contract.OWNER_UID_ANNOTATION] == obj["metadata"]["uid"]
    assert admin(bed, node, "get", "secret", contract.legacy_key_secret_name("myservice"), "-n", namespace,
                 check=False).returncode != 0
    addresses = check_network(bed, "myservice", ["node0", "node1", "node2"])
    public = public_key_of(base64.b64decode(current["data"]["privatekey"]).decode())
    assert service(bed, "node0")["peers"][addresses[node]]["publicKey"] == public


def test_deleted_key_secret_gets_a_new_key_everywhere(repaired):
    """Deleting the server's and a client's key Secret: the next run makes new keys, owned by
    their dtServices, and the server's table, the clients' spec.server and peers carry them."""
    bed = repaired.bed
    old = {node: public_key_of(private_key(bed, node)) for node, _pod in SEED_PODS}
    for node in ("node0", "node2"):
        admin(bed, node, "delete", "secret", contract.key_secret_name(bed.node(node).namespace, "myservice"),
              "-n", contract.KEYS_NAMESPACE)
    deploy(bed, inventory=repaired.inventory)
    new = {node: public_key_of(private_key(bed, node)) for node, _pod in SEED_PODS}
    assert new["node0"] != old["node0"] and new["node2"] != old["node2"] and new["node1"] == old["node1"]
    addresses = check_network(bed, "myservice", ["node0", "node1", "node2"])
    table = service(bed, "node0")["peers"]
    for node, _pod in SEED_PODS:
        obj = service(bed, node)
        assert table[addresses[node]]["publicKey"] == new[node], node
        assert obj["peers"][addresses[node]]["publicKey"] == new[node], node
        assert key_secret(bed, node)["metadata"]["annotations"][contract.OWNER_UID_ANNOTATION] == \
            obj["metadata"]["uid"]
        if node != "node0":
            assert obj["spec"]["server"]["publicKey"] == new["node0"]
            assert obj["peers"]["100.96.0.1"]["publicKey"] == new["node0"]
        assert obj["status"] == "Connected", node


# -- bed 2: six nodes, concurrent joins ---------------------------------------------------------

@pytest.fixture(scope="module")
def six(bed_factory, tmp_path_factory):
    bed = start_bed(bed_factory, nodes=6)
    nodes = [n.name for n in bed.nodes]
    for node in nodes:
        bed.create_pod(node, f"pod-{node}")
    services = {node: [{"name": "myservice", "domain": "mydomain", "pod": f"pod-{node}"}] for node in nodes}
    inventory = write_inventory(bed, tmp_path_factory.mktemp("six") / "six.json", services=services)
    result = deploy(bed, inventory=inventory)
    return SimpleNamespace(bed=bed, nodes=nodes, result=result)


def test_five_nodes_joining_in_one_run_get_distinct_addresses(six):
    """node0 serves, node1..node5 join in the same task of one run (the reconcile module works
    on all nodes side by side): addresses .1-.6, each once, the server's table equal to every
    member's own entry, pods labelled, every member Connected."""
    bed = six.bed
    assert all(c["failed"] == 0 for c in recap(six.result.stdout).values())
    addresses = check_network(bed, "myservice", six.nodes)
    assert addresses["node0"] == "100.96.0.1"
    for node in six.nodes:
        obj = service(bed, node)
        assert pod_dtservice_labels(bed, node, f"pod-{node}") == own_entry(obj)[1]["labels"]
        assert obj["status"] == "Connected", node


def race(refs: dict, name: str, racers: list[str]) -> dict:
    """Reconcile ``name`` on each racer at the same moment: one thread, Cluster and
    NodeReconciler each, released together by a barrier."""
    from ansible_collections.sightline.dtservice.plugins.module_utils.control.reconciler import NodeReconciler
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster

    barrier = threading.Barrier(len(racers))
    outcomes, errors = {}, {}

    def run(node: str) -> None:
        try:
            reconciler = NodeReconciler(cluster=Cluster(), node=refs[node], federation=refs)
            reconciler.cluster.connections.api(refs[node])
            barrier.wait(timeout=60)
            outcomes[node] = reconciler.provision(only={name})
        except Exception as error:  # reported below, with the node
            errors[node] = repr(error)

    threads = [threading.Thread(target=run, args=(node,)) for node in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == {}
    assert sorted(outcomes) == sorted(racers)
    return {node: outcome for node, found in outcomes.items() for outcome in found if outcome.name == name}


def addresses_so_far(bed, name: str, members: list[str]) -> dict[str, str | None]:
    """Mid-race invariants: one server, no address twice, the server's table exactly the
    entries of the members that have one. Node -> its address (None: not joined yet)."""
    objs = {n: service(bed, n, name) for n in members}
    own = {n: own_entry(o) for n, o in objs.items()}
    have = {n: e for n, e in own.items() if e}
    servers = [n for n, (_address, e) in have.items() if role(e) == "server"]
    assert len(servers) == 1, f"{name}: servers {servers}"
    addresses = [a for a, _entry in have.values()]
    assert len(set(addresses)) == len(addresses), f"{name}: shared addresses {sorted(addresses)}"
    assert objs[servers[0]]["peers"] == dict(have.values()), f"{name}: table and members differ"
    return {n: (e[0] if e else None) for n, e in own.items()}


def test_concurrent_reconcilers_never_share_an_address(six):
    """The core itself under a race: every node's NodeReconciler released at once, joining an
    existing network or all creating the same new one, then two clients leaving and coming
    back: never two live peers on one address, exactly one server, tables consistent."""
    from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
    from ansible_collections.sightline.dtservice.plugins.module_utils.control import teardown
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster

    bed = six.bed
    refs = {n.name: NodeRef(name=n.name, namespace=n.namespace, address=n.address, kubeconfig=n.kubeconfig)
            for n in bed.nodes}
    nodes = six.nodes

    def make(name: str, members: list[str]) -> None:
        for node in members:
            apply(bed, node, dtservice(name, "mydomain", "racer"))

    def race_until_joined(name: str, racers: list[str], *, contiguous: bool = True) -> tuple[int, dict]:
        """Race, check, and race again while somebody still waits for the server (a client that
        raced the server's own first pass is Pending and joins on its next one)."""
        for rounds in range(1, 4):
            outcomes = race(refs, name, racers)
            state = addresses_so_far(bed, name, nodes)
            for node, outcome in outcomes.items():
                if state[node] is None:
                    assert outcome.status == "Pending", (node, outcome.status, outcome.message)
                    assert "has not set the network up yet" in outcome.message
                else:
                    assert (outcome.status, outcome.address) == ("WaitingForPod", state[node]), node
            if all(state.values()):
                return rounds, check_network(bed, name, nodes, contiguous=contiguous)
        pytest.fail(f"{name}: not every member joined after 3 passes: {state}")

    make("race-a", nodes)
    race(refs, "race-a", ["node0"])
    rounds, before = race_until_joined("race-a", nodes[1:])
    assert rounds == 1, "with the server set up, five simultaneous joins all succeed at once"
    assert before["node0"].endswith(".1")
    for name in ("race-b", "race-c"):
        make(name, nodes)
        race_until_joined(name, nodes)
    for node in ("node2", "node4"):
        admin(bed, node, "delete", "dtservice", "race-a", "-n", bed.node(node).namespace, "--wait=false")
        # The teardown finalizer holds it until a pass finishes the deletion: that step alone.
        teardown.remove_service(cluster=Cluster(), node=refs[node], federation=refs,
                                service=get_json(bed, node, "dtservice", "race-a"))
    make("race-a", ["node2", "node4"])
    _rounds, after = race_until_joined("race-a", ["node0", "node2", "node4"], contiguous=False)
    assert {n: after[n] for n in nodes if n not in ("node2", "node4")} == \
        {n: before[n] for n in nodes if n not in ("node2", "node4")}
    registry = get_json(bed, "node0", "dtdomain", "mydomain")["status"]["networks"]
    subnets = [registry[name]["subnet"] for name in ("myservice", "race-a", "race-b", "race-c")]
    assert len(set(subnets)) == 4


def test_a_successor_deleted_while_it_takes_over_is_passed_over(six):
    """A teardown removes every node's dtService side by side: the hub hands its network to a
    client that another thread deletes meanwhile. The hand-over passes the gone client over
    for the next one (here made certain: the client goes after the hand-over read it), the
    clients that stay keep their addresses, and nothing fails."""
    from ansible_collections.sightline.dtservice.plugins.module_utils.control import registry
    from ansible_collections.sightline.dtservice.plugins.module_utils.control.view import PassView
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster

    bed, name = six.bed, "handover"
    members = ["node0", "node1", "node2", "node3"]
    refs = {n.name: contract.NodeRef(name=n.name, namespace=n.namespace, address=n.address, kubeconfig=n.kubeconfig)
            for n in bed.nodes}
    for node in members:
        apply(bed, node, dtservice(name, "mydomain", "racer"))
    race(refs, name, ["node0"])
    race(refs, name, members[1:])
    before = check_network(bed, name, members)
    clients = sorted(members[1:], key=lambda n: ipaddress.IPv4Address(before[n]))
    doomed, heir, other = clients
    view = PassView(cluster=Cluster(), node=refs["node0"], federation=refs)
    for node in members:
        assert view.service_on(refs[node], name) is not None
    admin(bed, doomed, "patch", "dtservice", name, "-n", bed.node(doomed).namespace, "--type=merge",
          "-p", '{"metadata": {"finalizers": null}}')
    admin(bed, doomed, "delete", "dtservice", name, "-n", bed.node(doomed).namespace)
    home = contract.Domain.from_object(get_json(bed, "node0", "dtdomain", "mydomain"))
    entry = registry.hand_over(view, domain=home, name=name,
                               leaving=peer_id(uid=service(bed, "node0", name)["metadata"]["uid"]))
    assert entry is not None
    assert (entry["server"]["node"], entry["server"]["address"]) == (heir, before[heir])
    assert get_json(bed, "node0", "dtdomain", "mydomain")["status"]["networks"][name] == entry
    table = service(bed, heir, name)["peers"]
    assert role(table[before[heir]]) == "server"
    assert role(table[before[other]]) == "client"
    assert before[doomed] not in table


def test_a_teardown_of_a_whole_network_hands_it_to_nobody_and_leaves_the_others(six, monkeypatch):
    """The teardown module's work removes one network on all six nodes side by side: every
    object is deleted before any leaves, so the hub hands its network to none of its clients
    (at 100 nodes, a hub handed it to a client being removed, which handed it on, and the
    teardown gave up after 20 attempts); the clients' leaving writes go through the hub's
    table together. Afterwards the network, its objects and key Secrets are gone, and the
    other network of the same nodes is as it was."""
    from ansible_collections.sightline.dtservice.plugins.module_utils.control import claims, teardown
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Connections
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.side_by_side import side_by_side

    bed, name = six.bed, "leaving"
    refs = {n.name: contract.NodeRef(name=n.name, namespace=n.namespace, address=n.address, kubeconfig=n.kubeconfig)
            for n in bed.nodes}
    for node in six.nodes:
        apply(bed, node, dtservice(name, "mydomain", f"pod-{node}"))
    race(refs, name, ["node0"])
    race(refs, name, six.nodes[1:])
    check_network(bed, name, six.nodes)
    staying = {node: service(bed, node)["peers"] for node in six.nodes}
    handed_to = []
    install_table = claims.install_table

    def install_and_note(view, **kwargs):
        handed_to.append(kwargs["node"].name)
        return install_table(view, **kwargs)

    monkeypatch.setattr(claims, "install_table", install_and_note)
    connections = Connections()

    def run_on_nodes(work):
        nodes = [refs[node] for node in six.nodes]
        answers = side_by_side(nodes, lambda node: work(cluster=Cluster(connections=connections), node=node),
                               at_most=len(nodes))
        return dict(zip(six.nodes, answers, strict=True))

    removed = teardown.remove_chosen(run_on_nodes, federation=refs, names={name})
    assert removed == {node: [name] for node in six.nodes}
    assert handed_to == [], "the network went to a client that was being removed"
    for node in six.nodes:
        assert admin(bed, node, "get", "dtservice", name, "-n", bed.node(node).namespace,
                     check=False).returncode != 0, node
        assert key_secret(bed, node, name, check=False) is None, node
        assert service(bed, node)["peers"] == staying[node], node
    assert name not in get_json(bed, "node0", "dtdomain", "mydomain")["status"]["networks"]


# -- bed 3: a federation over two API servers ------------------------------------------------

@pytest.fixture(scope="module")
def two_clusters(bed_factory, tmp_path_factory):
    bed = start_bed(bed_factory, nodes=3, clusters=2)
    for node, pod in SEED_PODS:
        bed.create_pod(node, pod)
    services = {node: [{"name": "myservice", "domain": "mydomain", "pod": pod}] for node, pod in SEED_PODS}
    inventory = write_inventory(bed, tmp_path_factory.mktemp("two") / "two.json", services=services)
    deploy(bed, inventory=inventory)
    return bed


def test_network_spans_two_api_servers(two_clusters):
    """node0 and node2 on one API server, node1 on another: node1 joins node0's network and
    the objects on both API servers are the seed's."""
    bed = two_clusters
    kubeconfigs = {n.name: n.admin_kubeconfig for n in bed.nodes}
    assert kubeconfigs["node0"] == kubeconfigs["node2"] != kubeconfigs["node1"]
    assert admin(bed, "node0", "get", "namespace", bed.node("node1").namespace, check=False).returncode != 0
    for node in ("node0", "node1"):
        admin(bed, node, "get", f"crd/dtservices.{GROUP}", f"crd/dtdomains.{GROUP}")
    addresses = check_network(bed, "myservice", ["node0", "node1", "node2"])
    assert addresses["node0"] == "100.96.0.1"
    server_key = public_key_of(private_key(bed, "node0"))
    for node, pod in SEED_PODS:
        obj = service(bed, node)
        assert obj["status"] == "Connected", node
        assert pod_dtservice_labels(bed, node, pod) == own_entry(obj)[1]["labels"]
        if node != "node0":
            assert obj["spec"]["server"] == {"endpoint": SERVER_ENDPOINT, "peer": NETWORK, "publicKey": server_key}
