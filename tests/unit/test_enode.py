"""The Ethereum example's filters: enode rewriting and a dtService's own overlay address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.sightline.dtservice.plugins.filter.dtservice_address import FilterModule as AddressFilters
from ansible_collections.sightline.dtservice.plugins.filter.dtservice_enode import FilterModule as EnodeFilters
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import enode, plan

dtservice_enode = EnodeFilters().filters()["dtservice_enode"]
dtservice_address = AddressFilters().filters()["dtservice_address"]

# The seed's Ethereum example, character for character.
SEED_NODE_ID = ("e0fa4355860d1f42ab6c3a3e918b0191a7a58712c4bdef74657daca282205197"
                "db2609082d9cdd023e801676316422bc6ed0cc3df0dfa10359751b3b521d6503")
SEED_BEFORE = f"enode://{SEED_NODE_ID}@10.1.111.77:30303"
SEED_AFTER = f"enode://{SEED_NODE_ID}@100.96.0.1:30303"
KEY = "d7Q5KQuLcr4VTxJcwsZmtDoq7fEpyYTuR1x0BWiaEXw="
OTHER_KEY = "0/0DnGBZH2wc81p25+Kygj9KxLZu2vjWsX8kte/GUR4="


def test_the_seed_example_is_rewritten_exactly():
    assert dtservice_enode(SEED_BEFORE, "100.96.0.1") == SEED_AFTER


def test_the_seed_example_as_printed_with_quotes_keeps_its_quotes():
    assert dtservice_enode(f'"{SEED_BEFORE}"\n', "100.96.0.1") == f'"{SEED_AFTER}"'


def test_node_id_port_and_query_are_kept():
    before = f"enode://{SEED_NODE_ID}@127.0.0.1:30311?discport=30312"
    assert enode.rewrite_enode(before, "100.96.3.7") == f"enode://{SEED_NODE_ID}@100.96.3.7:30311?discport=30312"


def test_an_ipv6_or_named_host_is_replaced_too():
    assert enode.rewrite_enode(f"enode://{SEED_NODE_ID}@[::1]:30303", "100.96.0.1") == SEED_AFTER
    assert enode.rewrite_enode(f"enode://{SEED_NODE_ID}@boot.example:30303", "100.96.0.1") == SEED_AFTER


def test_upper_case_hex_is_a_valid_node_id_and_is_kept():
    upper = SEED_NODE_ID.upper()
    assert enode.rewrite_enode(f"enode://{upper}@10.0.0.1:1", "100.96.0.1") == f"enode://{upper}@100.96.0.1:1"


def test_parse_splits_the_parts():
    assert enode.parse_enode(f"enode://{SEED_NODE_ID}@10.1.111.77:30303?discport=30301") == {
        "node_id": SEED_NODE_ID, "host": "10.1.111.77", "port": 30303, "query": "discport=30301",
        "quoted": False}


@pytest.mark.parametrize(("bad", "says"), [
    (f"enr://{SEED_NODE_ID}@10.1.111.77:30303", "scheme must be 'enode://', found 'enr://'"),
    (f"http://{SEED_NODE_ID}@10.1.111.77:30303", "found 'http://'"),
    (f"{SEED_NODE_ID}@10.1.111.77:30303", "scheme must be 'enode://', found 'none'"),
    (f"enode://{SEED_NODE_ID[:-2]}@10.1.111.77:30303", "node id must be 128 hex digits, found 126 characters"),
    (f"enode://{SEED_NODE_ID}00@10.1.111.77:30303", "node id must be 128 hex digits, found 130 characters"),
    (f"enode://{SEED_NODE_ID[:-1]}g@10.1.111.77:30303", "found 128 characters (not all hex)"),
    (f"enode://{SEED_NODE_ID}", "no '@' between the node id and the host"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77", "missing ':<port>' after the host '10.1.111.77'"),
    (f"enode://{SEED_NODE_ID}@[::1]", "missing ':<port>' after the host"),
    (f"enode://{SEED_NODE_ID}@[::1:30303", "IPv6 host without a closing ']'"),
    (f"enode://{SEED_NODE_ID}@:30303", "the host is empty"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77:", "port '' is not a number"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77:http", "port 'http' is not a number"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77:-1", "port '-1' is not a number"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77:0", "port 0 is outside 1-65535"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77:65536", "port 65536 is outside 1-65535"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77:30303?discport=x", "discport 'x' is not a number"),
    (f"enode://{SEED_NODE_ID}@10.1.111.77:30303?discport=0", "discport 0 is outside 1-65535"),
    (None, "is not a string"),
])
def test_bad_enodes_are_refused_with_what_is_wrong(bad, says):
    with pytest.raises(enode.EnodeError) as error:
        enode.rewrite_enode(bad, "100.96.0.1")
    assert says in str(error.value)
    with pytest.raises(AnsibleFilterError) as filter_error:
        dtservice_enode(bad, "100.96.0.1")
    assert str(filter_error.value).startswith("dtservice_enode: ") and says in str(filter_error.value)


@pytest.mark.parametrize("address", ["100.96.0", "100.96.0.256", "100.96.0.1/24", "fd00::1", "", "boot", None, 1])
def test_a_new_address_that_is_not_ipv4_is_refused(address):
    with pytest.raises(AnsibleFilterError, match=r"overlay address .* is not"):
        dtservice_enode(SEED_BEFORE, address)


def test_enode_error_is_a_value_error():
    assert issubclass(enode.EnodeError, ValueError)


# -- dtservice_address ------------------------------------------------------------------------

def service(uid: str, peers: dict, status: str | None = "Connected") -> dict:
    return {"apiVersion": "sid.sightlineinnovation.com/v1", "kind": "dtService",
            "metadata": {"name": "ethereumservice", "uid": uid}, "peers": peers, "status": status}


def test_the_server_s_own_address_is_its_server_entry():
    hub = service("hub-uid", {"100.96.0.1": plan.peer_entry(uid="hub-uid", role=contract.SERVER, public_key=KEY),
                              "100.96.0.2": plan.peer_entry(uid="a", role=contract.CLIENT, public_key=OTHER_KEY),
                              "100.96.0.3": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=OTHER_KEY)})
    assert dtservice_address(hub) == "100.96.0.1"


def test_a_client_s_own_address_is_the_entry_that_is_not_the_server_s():
    client = service("b", {"100.96.0.1": plan.peer_entry(uid="hub-uid", role=contract.SERVER, public_key=KEY),
                           "100.96.0.3": plan.peer_entry(uid="b", role=contract.CLIENT, public_key=OTHER_KEY)})
    assert dtservice_address(client) == "100.96.0.3"


def test_an_object_without_its_own_entry_yet_is_refused():
    pending = service("b", {}, status="WaitingForPod")
    with pytest.raises(AnsibleFilterError, match="no peers entry of its own yet .status: WaitingForPod"):
        dtservice_address(pending)


@pytest.mark.parametrize("value", [None, "ethereumservice", {"metadata": {}}, {"peers": {}}])
def test_something_that_is_not_a_dtservice_object_is_refused(value):
    with pytest.raises(AnsibleFilterError, match="a dtService object .* is needed"):
        dtservice_address(value)


def test_ansible_loads_both_filters_from_the_collection():
    """ansible (with the project's ansible.cfg) finds the filters by their collection names and applies them."""
    root = Path(__file__).resolve().parents[2]
    hub = service("hub-uid", {"100.96.0.1": plan.peer_entry(uid="hub-uid", role=contract.SERVER, public_key=KEY)})
    extra = json.dumps({"svc": hub, "before": SEED_BEFORE})
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-m", "ansible.builtin.debug", "-a",
         "msg={{ before | sightline.dtservice.dtservice_enode(svc | sightline.dtservice.dtservice_address) }}",
         "-e", extra], cwd=root, capture_output=True, text=True, check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'"msg": "{SEED_AFTER}"' in result.stdout
