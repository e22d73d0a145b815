"""The plan's rules: server tables, client claims, client fields, pod labels, declared plans."""

from __future__ import annotations

import base64
import hashlib

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import peer_id, peer_label_key
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing, keys, plan
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = "d7Q5KQuLcr4VTxJcwsZmtDoq7fEpyYTuR1x0BWiaEXw="
OTHER_KEY = "0/0DnGBZH2wc81p25+Kygj9KxLZu2vjWsX8kte/GUR4="


def key_of(uid: str) -> str:
    """A public key of each peer's own, as their key Secrets give them."""
    return keys.public_key_of(base64.b64encode(hashlib.sha256(uid.encode()).digest()).decode())


def client(uid: str, address: str | None = None, key: str | None = None) -> dict:
    key = key or key_of(uid)
    peers = {address: plan.peer_entry(uid=uid, role=contract.CLIENT, public_key=key)} if address else {}
    return {"metadata": {"uid": uid}, "peers": peers}


def test_server_table_keeps_live_clients_and_frees_departed_ones():
    current = {
        "100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
        "100.96.0.2": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a")),
        "100.96.0.3": plan.peer_entry(uid="gone", role=contract.CLIENT, public_key=key_of("gone")),
    }
    table = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                              live_clients=[client("a", "100.96.0.2")])
    assert sorted(table) == ["100.96.0.1", "100.96.0.2"]
    assert table["100.96.0.1"]["labels"] == {peer_label_key(uid="hub"): "server"}


def test_server_table_restores_a_client_removed_by_hand_at_its_own_address():
    current = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY)}
    table = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                              live_clients=[client("a", "100.96.0.7")])
    assert table["100.96.0.7"] == plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a"))


def test_server_table_takes_the_clients_current_key():
    current = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
               "100.96.0.2": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a"))}
    table = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                              live_clients=[client("a", "100.96.0.2", key=OTHER_KEY)])
    assert table["100.96.0.2"]["publicKey"] == OTHER_KEY


def test_server_table_never_lets_a_client_take_the_server_address():
    current = {"100.96.0.1": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a"))}
    table = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                              live_clients=[client("a", "100.96.0.1")])
    assert list(table) == ["100.96.0.1"]
    assert plan.role_of(table["100.96.0.1"]) == contract.SERVER


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from([f"u{i}" for i in range(12)]),
                       st.tuples(st.integers(2, 20), st.booleans()), max_size=12))
def test_server_table_never_puts_two_peers_on_one_address(claims):
    current = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY)}
    live = []
    for uid, (host, in_table) in claims.items():
        address = f"100.96.0.{host}"
        if in_table and address not in current:
            current[address] = plan.peer_entry(uid=uid, role=contract.CLIENT, public_key=key_of(uid))
        live.append(client(uid, address))
    table = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                              live_clients=live)
    owners = [plan.id_of(entry) for entry in table.values()]
    assert len(owners) == len(set(owners)), "a peer appears twice"
    assert plan.id_of(table["100.96.0.1"]) == peer_id(uid="hub")
    again = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=table,
                              live_clients=live)
    assert again == table, "the table is stable once reconciled"


def test_a_claim_takes_the_lowest_free_address_and_keeps_it_on_the_next_pass():
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
             "100.96.0.2": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a"))}
    address, claimed = plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid="b", public_key=key_of("b"))
    assert address == "100.96.0.3"
    assert claimed == {**table, "100.96.0.3": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=key_of("b"))}
    assert plan.claim_in_table(table=claimed, subnet="100.96.0.0/24", uid="b", public_key=key_of("b")) \
        == (address, claimed)
    assert "100.96.0.3" not in table, "the table read is left as it was"


def test_a_claim_returns_to_the_recorded_address_and_leaves_no_second_entry():
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
             "100.96.7.9": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=key_of("b"))}
    address, claimed = plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid="b", public_key=key_of("b"),
                                           preferred="100.96.0.5")
    assert address == "100.96.0.5"
    assert sorted(claimed) == ["100.96.0.1", "100.96.0.5"], "its entry left from an earlier subnet is dropped"
    assert claimed["100.96.0.5"] == plan.peer_entry(uid="b", role=contract.CLIENT, public_key=key_of("b"))


@settings(max_examples=60, deadline=None)
@given(clients=st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=10, unique=True),
       preferred=st.integers(min_value=0, max_value=255))
def test_a_claim_standing_in_the_table_is_kept_as_claim_address_rules(clients, preferred):
    """Property: once every client has claimed, each one's next claim (whatever address it
    prefers) leaves the table as it is and gets the address ``claim_address`` gives it."""
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY)}
    for uid in clients:
        _address, table = plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid=uid, public_key=key_of(uid))
    for uid in clients:
        wanted = f"100.96.0.{preferred}"
        address, again = plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid=uid, public_key=key_of(uid),
                                             preferred=wanted)
        assert again == table and again is not table
        assert address == addressing.claim_address(subnet="100.96.0.0/24", peer_key=peer_id(uid=uid),
                                                   peers={a: plan.id_of(e) for a, e in table.items()},
                                                   preferred=wanted)


def reference_claim(*, table: dict, uid: str, public_key: str) -> str | None:
    """What a claim must see, read entry by entry: the one address of the claimant's own
    entry, "refused" when another peer's entry holds its key, else None."""
    owned = [at for at, entry in table.items() if plan.id_of(entry) == peer_id(uid=uid)]
    if any(entry.get("publicKey") == public_key and plan.id_of(entry) != peer_id(uid=uid)
           for entry in table.values()):
        return "refused"
    return owned[0] if len(owned) == 1 else None


@settings(max_examples=80, deadline=None)
@given(entries=st.lists(st.tuples(st.integers(min_value=2, max_value=20), st.sampled_from("abcde"),
                                  st.sampled_from("abcde")), max_size=12),
       claimant=st.sampled_from("abcde"))
def test_a_claim_with_the_tables_index_answers_as_one_that_reads_every_entry(entries, claimant):
    """Property: a claim given the table's index (made once for all the clients of a pass) is
    refused, keeps its standing entry or takes a new address exactly as reading the table
    entry by entry says, however the table's ids and keys repeat."""
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY)}
    for host, uid, key_owner in entries:
        table[f"100.96.0.{host}"] = plan.peer_entry(uid=uid, role=contract.CLIENT, public_key=key_of(key_owner))
    index = plan.table_index(table)
    expected = reference_claim(table=table, uid=claimant, public_key=key_of(claimant))
    for given_index in (index, index, None):  # kept for many claims, or made by the claim
        if expected == "refused":
            with pytest.raises(plan.PlanError, match="already used by another peer"):
                plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid=claimant, public_key=key_of(claimant),
                                    index=given_index)
            continue
        address, claimed = plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid=claimant,
                                               public_key=key_of(claimant), index=given_index)
        assert [at for at, entry in claimed.items() if plan.id_of(entry) == peer_id(uid=claimant)] == [address]
        if expected is not None and table[expected] == plan.peer_entry(uid=claimant, role=contract.CLIENT,
                                                                       public_key=key_of(claimant)):
            assert (address, claimed) == (expected, table), "a standing claim is kept as it is"


def test_a_claim_never_takes_an_address_another_peer_holds():
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
             "100.96.0.5": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a"))}
    address, claimed = plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid="b", public_key=key_of("b"),
                                           preferred="100.96.0.5")
    assert address == "100.96.0.2"
    assert plan.id_of(claimed["100.96.0.5"]) == peer_id(uid="a")


def test_client_fields_match_the_seed():
    hub_table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
                 "100.96.0.2": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a")),
                 "100.96.0.3": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=key_of("b"))}
    peers, server = plan.client_fields(hub_table=hub_table, subnet="100.96.0.0/24", endpoint="10.4.0.16:51830",
                                       own_address="100.96.0.2")
    assert sorted(peers) == ["100.96.0.1", "100.96.0.2"]
    assert server == {"endpoint": "10.4.0.16:51830", "peer": "100.96.0.0/24", "publicKey": KEY}


def test_label_changes_add_missing_and_remove_stale_labels_only():
    pods = {"p": {"metadata": {"labels": {"app": "x", f"{contract.LABEL_PREFIX}old": "client"}}},
            "q": {"metadata": {"labels": {f"{contract.LABEL_PREFIX}keep": "server"}}}}
    wanted = {"p": {f"{contract.LABEL_PREFIX}new": "server"}, "q": {f"{contract.LABEL_PREFIX}keep": "server"}}
    assert plan.label_changes(pods=pods, wanted=wanted) == {
        "p": {f"{contract.LABEL_PREFIX}old": None, f"{contract.LABEL_PREFIX}new": "server"}}


NODES = {n: {"namespace": f"dtaas-{n}-dtaas"} for n in ("node0", "node1", "node2")}


def test_declared_plan_orders_servers_by_inventory():
    domains = [{"name": "mydomain", "members": ["node0", "node1", "node2"]}]
    services = {"node1": [{"name": "net", "domain": "mydomain", "pod": "b"}],
                "node0": [{"name": "net", "domain": "mydomain", "pod": "a"}]}
    declared = plan.declared_plan(domains=domains, nodes=NODES, services=services,
                                  node_order=["node0", "node1", "node2"])
    assert declared["networks"]["net"]["server_node"] == "node0"
    assert declared["serves"] == {"node0": ["net"], "node1": [], "node2": []}
    assert len(set(declared["networks"]["net"]["interfaces"].values())) == 2


@pytest.mark.parametrize(("domains", "services", "reason", "words"), [
    ([{"name": "d", "members": ["node0"]}], {"node0": [{"name": "n", "domain": "x", "pod": "p"}]},
     "DomainNotFound", "'x'"),
    ([{"name": "d", "members": ["node0"]}], {"node1": [{"name": "n", "domain": "d", "pod": "p"}]},
     "NotAMember", "node node1 is not a member"),
    ([{"name": "d", "members": ["node0", "node1"]}, {"name": "e", "members": ["node0", "node1"]}],
     {"node0": [{"name": "n", "domain": "d", "pod": "p"}], "node1": [{"name": "n", "domain": "e", "pod": "p"}]},
     "NetworkNameTaken", "already belongs to dtDomain 'd'"),
    ([{"name": "d", "members": ["node0", "nodeX"]}], {}, "Failed", "not inventory hosts"),
    ([{"name": "d", "members": ["node0", "node1", "node0"]}], {}, "Failed", "more than once: ['node0']"),
])
def test_declared_plan_rejects_bad_declarations(domains, services, reason, words):
    with pytest.raises(plan.PlanError) as rejected:
        plan.declared_plan(domains=domains, nodes=NODES, services=services, node_order=list(NODES))
    assert rejected.value.reason == reason
    assert words in str(rejected.value)


def federation_of(size: int, clusters: int = 2) -> dict:
    hosts = [f"node{i}" for i in range(size)]
    nodes = {h: {"name": h, "namespace": f"dtaas-{h}-dtaas", "address": f"198.18.0.{10 + i}",
                 "kubeconfig": f"/k/cluster{i % clusters}", "context": None, "port_range": "51820-51919",
                 "netns": None} for i, h in enumerate(hosts)}
    return plan.federation_plan(
        hosts=hosts, nodes=nodes, machines=dict.fromkeys(hosts, "localhost"),
        domains=[{"name": "mydomain", "members": hosts}],
        services={h: [{"name": "net", "domain": "mydomain", "pod": f"p{i}"}] for i, h in enumerate(hosts)})


def test_federation_plan_gives_home_every_member_and_each_other_member_home_and_itself():
    planned = federation_of(5)
    domains = planned["manifests"]["domains"]
    assert [(d["kubeconfig"], [o["metadata"]["namespace"] for o in d["objects"]]) for d in domains] == [
        ("/k/cluster0", ["dtaas-node0-dtaas", "dtaas-node2-dtaas", "dtaas-node4-dtaas"]),
        ("/k/cluster1", ["dtaas-node1-dtaas", "dtaas-node3-dtaas"])]
    spec = planned["domains"]["mydomain"]
    copies = {o["metadata"]["namespace"]: o["spec"] for d in domains for o in d["objects"]}
    assert copies["dtaas-node0-dtaas"] == spec
    for i in range(1, 5):
        assert copies[f"dtaas-node{i}-dtaas"] == {**spec, "members": [spec["members"][0], spec["members"][i]]}
    services = planned["manifests"]["services"]
    assert sorted(o["metadata"]["namespace"] for c in services for o in c["objects"]) == sorted(
        f"dtaas-node{i}-dtaas" for i in range(5))
    assert planned["agents"] == {"node0": list(planned["nodes"])}
    assert list(planned["nodes"].values()) == planned["federation"]


def test_a_machines_arguments_are_its_nodes_with_the_federation_only_when_they_are_not_all_of_it():
    hosts = [f"node{i}" for i in range(4)]
    nodes = {h: {"name": h, "namespace": f"dtaas-{h}-dtaas", "address": f"198.18.0.{10 + i}", "kubeconfig": "/k",
                 "context": None, "port_range": "51820-51919", "netns": None} for i, h in enumerate(hosts)}
    services = {h: [{"name": "net", "domain": "mydomain", "pod": f"p{i}"}] for i, h in enumerate(hosts)}

    def planned(machines: dict) -> dict:
        return plan.federation_plan(hosts=hosts, nodes=nodes, machines=machines, services=services,
                                    domains=[{"name": "mydomain", "members": hosts}])

    alone = planned(dict.fromkeys(hosts, "localhost"))
    assert plan.machine_arguments(alone, agent="node0") == {
        "nodes": [nodes[h] for h in hosts], "federation": [], "serves": {"node0": ["net"]}}
    two = planned({h: f"m{i % 2}" for i, h in enumerate(hosts)})
    assert two["agents"] == {"node0": ["node0", "node2"], "node1": ["node1", "node3"]}
    assert plan.machine_arguments(two, agent="node1") == {
        "nodes": [nodes["node1"], nodes["node3"]], "federation": two["federation"], "serves": {"node0": ["net"]}}
    with pytest.raises(KeyError):
        plan.machine_arguments(two, agent="node2")


def test_federation_plan_grows_linearly_with_the_members():
    import json

    small, large = (len(json.dumps(federation_of(n))) for n in (10, 100))
    assert large < 12 * small


# -- what a client records is its owner's to edit: the table checks it -----------------------

def test_a_recorded_address_outside_the_subnet_or_on_the_hub_is_not_taken():
    current = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY)}
    for address in ("100.96.1.7", "0.0.0.0", "100.96.0.1", "100.96.0.255", "not-an-address"):
        table = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                                  live_clients=[client("mallory", address)])
        assert sorted(table) == ["100.96.0.1"], address


def test_a_key_another_peer_uses_is_not_taken_and_the_table_keeps_the_clients_own():
    current = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
               "100.96.0.2": plan.peer_entry(uid="victim", role=contract.CLIENT, public_key=key_of("victim")),
               "100.96.0.3": plan.peer_entry(uid="mallory", role=contract.CLIENT, public_key=key_of("mallory"))}
    for stolen in (key_of("victim"), KEY, "not a key"):
        live = [client("victim", "100.96.0.2"), client("mallory", "100.96.0.3", key=stolen)]
        table = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                                  live_clients=live)
        assert table == current, stolen
    newcomer = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY,
                                 current={"100.96.0.1": current["100.96.0.1"], "100.96.0.2": current["100.96.0.2"]},
                                 live_clients=[client("victim", "100.96.0.2"),
                                               client("mallory", "100.96.0.9", key=key_of("victim"))])
    assert sorted(newcomer) == ["100.96.0.1", "100.96.0.2"], "a newcomer with a stolen key gets no address"


def test_a_claim_with_a_key_another_peer_holds_is_refused():
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
             "100.96.0.2": plan.peer_entry(uid="victim", role=contract.CLIENT, public_key=key_of("victim"))}
    with pytest.raises(plan.PlanError, match="already used by another peer"):
        plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid="mallory", public_key=key_of("victim"))


def test_a_hubs_interface_knows_only_valid_clients_of_its_subnet_each_with_a_key_of_its_own():
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
             "100.96.0.2": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a")),
             "100.96.0.3": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=key_of("a")),
             "100.96.0.4": plan.peer_entry(uid="c", role=contract.CLIENT, public_key=KEY),
             "0.0.0.0": plan.peer_entry(uid="d", role=contract.CLIENT, public_key=key_of("d")),
             "100.96.0.5": plan.peer_entry(uid="e", role=contract.SERVER, public_key=key_of("e")),
             "100.96.0.6": {"labels": {}, "publicKey": "garbage"}}
    peers, refused = plan.hub_peers(table=table, subnet="100.96.0.0/24", hub_key=KEY)
    assert peers == [("100.96.0.2", key_of("a"))]
    assert sorted(refused) == ["0.0.0.0", "100.96.0.3", "100.96.0.4", "100.96.0.5", "100.96.0.6"]


def test_a_clients_address_is_the_one_the_hubs_table_gives_its_uid():
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
             "100.96.0.7": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a"))}
    assert plan.address_in_table(table=table, uid="a") == "100.96.0.7"
    assert plan.address_in_table(table=table, uid="b") is None


def test_while_a_member_does_not_answer_its_clients_keep_their_addresses():
    current = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
               "100.96.0.2": plan.peer_entry(uid="far", role=contract.CLIENT, public_key=key_of("far")),
               "100.96.0.3": plan.peer_entry(uid="near", role=contract.CLIENT, public_key=key_of("near"))}
    live = [client("near", "100.96.0.3")]
    kept = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                             live_clients=live, keep_unseen=True)
    assert kept == current
    freed = plan.server_table(subnet="100.96.0.0/24", server_uid="hub", server_key=KEY, current=current,
                              live_clients=live)
    assert sorted(freed) == ["100.96.0.1", "100.96.0.3"], "once everyone answered, a departed client is freed"


# -- failover: a client becomes the hub at its own address -------------------------------------------
def test_the_successor_is_a_connected_client_with_the_lowest_address():
    a, b, c = client("a", "100.96.0.5"), client("b", "100.96.0.3"), client("c", "100.96.0.2")
    a["status"], b["status"], c["status"] = "Connected", "Connected", "WaitingForPod"
    chosen, address, key = plan.successor(candidates=[a, b, c], subnet="100.96.0.0/24", table={})
    assert (chosen["metadata"]["uid"], address, key) == ("b", "100.96.0.3", key_of("b"))


def test_a_client_without_a_recorded_address_or_key_never_succeeds():
    assert plan.successor(candidates=[client("new"), client("bad", "100.96.0.2", key="nokey")],
                          subnet="100.96.0.0/24", table={}) is None
    assert plan.successor(candidates=[client("out", "100.96.1.2")], subnet="100.96.0.0/24", table={}) is None


def test_the_old_hubs_table_says_where_a_successor_is_not_what_it_recorded():
    table = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
             "100.96.0.2": plan.peer_entry(uid="victim", role=contract.CLIENT, public_key=key_of("victim")),
             "100.96.0.5": plan.peer_entry(uid="forger", role=contract.CLIENT, public_key=key_of("forger"))}
    # The forger records the victim's (lower) address for itself to be chosen there.
    forger, victim = client("forger", "100.96.0.2"), client("victim", "100.96.0.2")
    forger["status"] = victim["status"] = "Connected"
    chosen, address, _key = plan.successor(candidates=[forger, victim], subnet="100.96.0.0/24", table=table)
    assert (chosen["metadata"]["uid"], address) == ("victim", "100.96.0.2")
    late = client("late", "100.96.0.5")  # not in the table, recording an address the table gives another
    assert plan.successor(candidates=[late], subnet="100.96.0.0/24", table=table) is None


def test_the_new_hubs_table_keeps_every_address_and_serves_from_its_own():
    old = {"100.96.0.1": plan.peer_entry(uid="hub", role=contract.SERVER, public_key=KEY),
           "100.96.0.2": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=key_of("a")),
           "100.96.0.3": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=key_of("b"))}
    table = plan.server_table(subnet="100.96.0.0/24", server_uid="a", server_key=key_of("a"), current=old,
                              live_clients=[client("b", "100.96.0.3")], hub_address="100.96.0.2")
    assert table == {"100.96.0.2": plan.peer_entry(uid="a", role=contract.SERVER, public_key=key_of("a")),
                     "100.96.0.3": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=key_of("b"))}
    peers, refused = plan.hub_peers(table=table, subnet="100.96.0.0/24", hub_key=key_of("a"))
    assert (peers, refused) == ([("100.96.0.3", key_of("b"))], [])
    fields, server = plan.client_fields(hub_table=table, subnet="100.96.0.0/24", endpoint="198.18.0.11:51820",
                                        own_address="100.96.0.3", hub_address="100.96.0.2")
    assert sorted(fields) == ["100.96.0.2", "100.96.0.3"]
    assert server == {"endpoint": "198.18.0.11:51820", "peer": "100.96.0.0/24", "publicKey": key_of("a")}


def test_a_client_claiming_after_a_failover_never_gets_the_hubs_address():
    table = {"100.96.0.2": plan.peer_entry(uid="a", role=contract.SERVER, public_key=key_of("a"))}
    address, _claimed = plan.claim_in_table(table=table, subnet="100.96.0.0/24", uid="n", public_key=key_of("n"))
    assert address == "100.96.0.3"
