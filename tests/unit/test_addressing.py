"""Unit and property tests for plugins/module_utils/dtservice/addressing.py."""

from __future__ import annotations

import ipaddress
import re

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    STATES,
    interface_name,
    peer_id,
    peer_label_key,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import addressing
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.addressing import (
    AllocationError,
    InvalidInput,
    PoolExhausted,
    PortsExhausted,
    SubnetExhausted,
    allocate_port,
    allocate_subnet,
    claim_address,
    lowest_free_host,
    server_address,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

DEFAULT_POOL = "100.96.0.0/12"
NET0 = "100.96.0.0/24"
SERVER = "server-id"
K8S_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def client_hosts(subnet: str) -> list[str]:
    """Reference model: every address a client may get, in order."""
    net = ipaddress.ip_network(subnet)
    return [str(a) for a in list(net.hosts())[1:]]


# =========================================================================== exceptions


def test_exception_reasons_are_status_words() -> None:
    assert AllocationError("x").reason == "Failed"
    assert PoolExhausted("x").reason == "PoolExhausted"
    assert SubnetExhausted("x").reason == "SubnetExhausted"
    assert PortsExhausted("x").reason == "PortsExhausted"
    assert InvalidInput("x").reason == "Failed"
    for cls in (AllocationError, PoolExhausted, SubnetExhausted, PortsExhausted, InvalidInput):
        assert cls("x").reason in STATES
    for cls in (PoolExhausted, SubnetExhausted, PortsExhausted, InvalidInput):
        assert issubclass(cls, AllocationError)
    assert issubclass(InvalidInput, ValueError)
    assert str(PoolExhausted("no room")) == "no room"


# =========================================================================== subnets


def test_first_subnet_of_default_pool_matches_seed() -> None:
    assert allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=[]) == "100.96.0.0/24"


def test_second_subnet_follows_first() -> None:
    assert (
        allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=[NET0]) == "100.96.1.0/24"
    )


def test_freed_subnet_is_reused_first() -> None:
    taken = ["100.96.1.0/24", "100.96.2.0/24"]
    assert allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=taken) == "100.96.0.0/24"


def test_subnet_skips_overlapping_networks_of_other_sizes() -> None:
    # A /23 covers two /24 slots, a stray /30 blocks the third one.
    taken = ["100.96.0.0/23", "100.96.2.4/30"]
    assert allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=taken) == "100.96.3.0/24"


def test_subnet_ignores_networks_outside_pool_and_ipv6() -> None:
    taken = ["10.0.0.0/8", "100.95.255.0/24", "100.112.0.0/24", "fd00::/64"]
    assert allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=taken) == "100.96.0.0/24"


def test_subnet_covering_whole_pool_exhausts_it() -> None:
    with pytest.raises(PoolExhausted, match=r"100\.96\.0\.0/12 has no free /24"):
        allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=["100.64.0.0/10"])


def test_pool_exhausted_message_counts_subnets_in_use() -> None:
    taken = ["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/27", "10.0.0.192/28"]
    with pytest.raises(PoolExhausted) as err:
        allocate_subnet(pool="10.0.0.0/24", prefix=26, taken=taken)
    assert err.value.reason == "PoolExhausted"
    assert "10.0.0.0/24" in str(err.value)
    assert "4 of 4 /26 subnets" in str(err.value)


def test_subnet_sweep_is_fast_on_huge_pools() -> None:
    taken = [f"10.0.{i}.0/24" for i in range(200)]
    assert allocate_subnet(pool="10.0.0.0/8", prefix=30, taken=taken) == "10.0.200.0/30"


@pytest.mark.parametrize(
    ("pool", "prefix", "match"),
    [
        ("100.96.0.1/12", 24, "not a valid network"),
        ("not-a-net", 24, "not a valid network"),
        ("fd00::/48", 64, "not IPv4"),
        (DEFAULT_POOL, 12, r"longer than /12"),
        (DEFAULT_POOL, 8, r"longer than /12"),
        (DEFAULT_POOL, 31, r"at most /30"),
        (DEFAULT_POOL, "24", "must be an integer"),
        (DEFAULT_POOL, True, "must be an integer"),
        (None, 24, "must be a string"),
    ],
)
def test_allocate_subnet_rejects_bad_input(
    pool: object, prefix: object, match: str
) -> None:
    with pytest.raises(InvalidInput, match=match) as err:
        allocate_subnet(pool=pool, prefix=prefix, taken=[])  # type: ignore[arg-type]
    assert err.value.reason == "Failed"


def test_allocate_subnet_rejects_bad_taken() -> None:
    with pytest.raises(InvalidInput, match="'garbage'"):
        allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=["garbage"])
    with pytest.raises(InvalidInput, match="single string"):
        allocate_subnet(pool=DEFAULT_POOL, prefix=24, taken=NET0)  # type: ignore[arg-type]


def test_functions_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        # Deliberately positional: the call must be refused.
        allocate_subnet(DEFAULT_POOL, 24, [])  # type: ignore[misc]  # pylint: disable=missing-kwoa
    with pytest.raises(TypeError):
        server_address(NET0)  # type: ignore[misc]  # pylint: disable=missing-kwoa


# =========================================================================== hosts


def test_server_is_first_host() -> None:
    assert server_address(subnet=NET0) == "100.96.0.1"
    assert server_address(subnet="100.96.1.0/24") == "100.96.1.1"
    assert server_address(subnet="10.0.0.4/30") == "10.0.0.5"


@pytest.mark.parametrize(
    ("subnet", "match"),
    [
        ("100.96.0.1/24", "not a valid network"),
        ("100.96.0.0/31", "too small"),
        ("100.96.0.0/32", "too small"),
        ("fd00::/64", "not IPv4"),
        (42, "must be a string"),
    ],
)
def test_server_address_rejects_bad_subnet(subnet: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        server_address(subnet=subnet)  # type: ignore[arg-type]


def test_first_client_is_dot_two_then_dot_three() -> None:
    assert lowest_free_host(subnet=NET0, taken=[]) == "100.96.0.2"
    assert lowest_free_host(subnet=NET0, taken=["100.96.0.1"]) == "100.96.0.2"
    assert (
        lowest_free_host(subnet=NET0, taken=["100.96.0.1", "100.96.0.2"])
        == "100.96.0.3"
    )


def test_freed_host_is_next() -> None:
    taken = ["100.96.0.1", "100.96.0.3", "100.96.0.4"]  # .2 left
    assert lowest_free_host(subnet=NET0, taken=taken) == "100.96.0.2"


def test_host_ignores_outside_addresses_and_ipv6() -> None:
    taken = ["100.96.1.2", "10.0.0.2", "fd00::2", "100.96.0.0", "100.96.0.255"]
    assert lowest_free_host(subnet=NET0, taken=taken) == "100.96.0.2"


def test_subnet_exhausted_names_subnet_and_count() -> None:
    taken = ["10.0.0.6"]  # /30: .4 net, .5 server, .6 only client, .7 broadcast
    with pytest.raises(SubnetExhausted) as err:
        lowest_free_host(subnet="10.0.0.4/30", taken=taken)
    assert err.value.reason == "SubnetExhausted"
    assert "10.0.0.4/30" in str(err.value)
    assert "all 1 of 10.0.0.6-10.0.0.6" in str(err.value)

    full = client_hosts(NET0)
    with pytest.raises(
        SubnetExhausted, match=r"all 253 of 100\.96\.0\.2-100\.96\.0\.254"
    ):
        lowest_free_host(subnet=NET0, taken=full)


def test_lowest_free_host_rejects_malformed_taken() -> None:
    with pytest.raises(InvalidInput, match="'100.96.0.x'"):
        lowest_free_host(subnet=NET0, taken=["100.96.0.x"])
    with pytest.raises(InvalidInput, match="single string"):
        lowest_free_host(subnet=NET0, taken="100.96.0.2")  # type: ignore[arg-type]


# =========================================================================== claims


def test_claim_sequence_matches_seed() -> None:
    table = {"100.96.0.1": SERVER}
    first = claim_address(subnet=NET0, peers=table, peer_key="a")
    assert first == "100.96.0.2"
    table[first] = "a"
    second = claim_address(subnet=NET0, peers=table, peer_key="b")
    assert second == "100.96.0.3"


def test_claim_is_stable_for_owner() -> None:
    table = {"100.96.0.1": SERVER, "100.96.0.2": "a", "100.96.0.7": "b"}
    assert claim_address(subnet=NET0, peers=table, peer_key="b") == "100.96.0.7"
    # An owned entry wins over whatever the client remembers.
    again = claim_address(
        subnet=NET0, peers=table, peer_key="b", preferred="100.96.0.9"
    )
    assert again == "100.96.0.7"


def test_claim_keeps_lowest_when_key_owns_several() -> None:
    table = {"100.96.0.9": "a", "100.96.0.4": "a"}
    assert claim_address(subnet=NET0, peers=table, peer_key="a") == "100.96.0.4"


def test_claim_honours_free_preferred_address() -> None:
    table = {"100.96.0.1": SERVER, "100.96.0.2": "a"}
    got = claim_address(subnet=NET0, peers=table, peer_key="c", preferred="100.96.0.42")
    assert got == "100.96.0.42"


@pytest.mark.parametrize(
    "preferred",
    ["100.96.0.2", "100.96.0.1", "100.96.0.0", "100.96.0.255", "100.96.1.5", "fd00::5"],
)
def test_claim_ignores_unusable_preferred_address(preferred: str) -> None:
    table = {"100.96.0.1": SERVER, "100.96.0.2": "a"}
    got = claim_address(subnet=NET0, peers=table, peer_key="c", preferred=preferred)
    assert got == "100.96.0.3"


def test_claim_ignores_owned_entry_that_is_not_a_client_host() -> None:
    # Left over from another subnet, or sitting on the server/broadcast address.
    table = {"100.96.0.1": "c", "100.96.5.9": "c", "100.96.0.255": "c"}
    assert claim_address(subnet=NET0, peers=table, peer_key="c") == "100.96.0.2"


def test_claim_reuses_freed_address() -> None:
    table = {"100.96.0.1": SERVER, "100.96.0.2": "a", "100.96.0.3": "b"}
    del table["100.96.0.2"]
    assert claim_address(subnet=NET0, peers=table, peer_key="c") == "100.96.0.2"


def test_claim_exhausted_subnet() -> None:
    table = {"10.0.0.5": SERVER, "10.0.0.6": "a"}
    with pytest.raises(SubnetExhausted, match=r"10\.0\.0\.4/30"):
        claim_address(subnet="10.0.0.4/30", peers=table, peer_key="b")
    # ...but the owner of the only address is still answered.
    assert claim_address(subnet="10.0.0.4/30", peers=table, peer_key="a") == "10.0.0.6"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"peers": {"bogus": "a"}}, "'bogus'"),
        ({"peers": {"100.96.0.2": 7}}, "must be a string"),
        ({"peers": [("100.96.0.2", "a")]}, "must be a mapping"),
        ({"peer_key": ""}, "non-empty"),
        ({"peer_key": None}, "non-empty"),
        ({"preferred": "100.96.0.300"}, "not a valid IP"),
        ({"subnet": "100.96.0.0/33"}, "not a valid network"),
    ],
)
def test_claim_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"subnet": NET0, "peers": {}, "peer_key": "k"}
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=match):
        claim_address(**args)  # type: ignore[arg-type]


# =========================================================================== ports


def test_ports_lowest_first() -> None:
    assert allocate_port(port_range="51820-51899", taken=[]) == 51820
    assert allocate_port(port_range="51820-51899", taken=[51820, 51821]) == 51822
    assert allocate_port(port_range="51820-51899", taken=[51821]) == 51820


def test_ports_ignore_outside_range_and_allow_spaces() -> None:
    assert (
        allocate_port(port_range=" 51830 - 51831 ", taken=[51829, 9999, 51830]) == 51831
    )
    assert allocate_port(port_range="1-1", taken=[]) == 1
    assert allocate_port(port_range="65535-65535", taken=[]) == 65535


def test_ports_exhausted_message() -> None:
    with pytest.raises(PortsExhausted) as err:
        allocate_port(port_range="51830-51832", taken=[51830, 51831, 51832, 40000])
    assert err.value.reason == "PortsExhausted"
    assert "51830-51832" in str(err.value)
    assert "all 3 ports" in str(err.value)


@pytest.mark.parametrize(
    ("port_range", "taken", "match"),
    [
        ("51830", [], "LOW-HIGH"),
        ("a-b", [], "LOW-HIGH"),
        ("-5-10", [], "LOW-HIGH"),
        ("0-10", [], "1-65535"),
        ("65000-65536", [], "1-65535"),
        ("51899-51820", [], "empty"),
        (51820, [], "must be a string"),
        ("1-10", ["3"], "not an integer"),
        ("1-10", [True], "not an integer"),
    ],
)
def test_ports_reject_bad_input(
    port_range: object, taken: list[object], match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        allocate_port(port_range=port_range, taken=taken)  # type: ignore[arg-type]


# =========================================================================== names

SEED_UID = "b4c5e0a5-dbff-49e2-bee6-eacbfb5ce3ce"


def test_peer_id_shape_and_stability() -> None:
    pid = peer_id(uid=SEED_UID)
    assert re.fullmatch(r"[0-9a-f]{32}", pid)
    assert pid == peer_id(uid=SEED_UID)
    assert pid != SEED_UID
    assert pid != SEED_UID.replace("-", "")
    assert pid != peer_id(uid="839bbb8d-49f6-4c7b-9c01-585ea5b8294a")


def test_peer_label_key() -> None:
    key = peer_label_key(uid=SEED_UID)
    assert key == "sid.sightline.dtservice." + peer_id(uid=SEED_UID)
    assert len(key) <= 63 and K8S_LABEL_NAME.match(key)


def test_interface_name_shape_and_separation() -> None:
    name = interface_name(namespace="dtaas-node0-dtaas", network="myservice")
    assert re.fullmatch(r"dt[0-9a-f]{10}", name)
    assert name == interface_name(namespace="dtaas-node0-dtaas", network="myservice")
    assert name != interface_name(namespace="dtaas-node1-dtaas", network="myservice")
    # Concatenation ambiguity must not collide.
    assert interface_name(namespace="a", network="bc") != interface_name(
        namespace="ab", network="c"
    )


@pytest.mark.parametrize("bad", ["", None, 5])
def test_names_reject_empty_input(bad: object) -> None:
    with pytest.raises(ValueError):
        peer_id(uid=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        interface_name(namespace=bad, network="n")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        interface_name(namespace="ns", network=bad)  # type: ignore[arg-type]


# =========================================================================== properties

# Small subnets so exhaustion and reuse actually happen within a few dozen steps.
subnets = st.sampled_from(
    ["10.0.0.0/29", "10.0.0.0/28", "100.96.3.0/27", "100.96.0.0/24"]
)
keys = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12
)


class ClaimTable(RuleBasedStateMachine):
    """Peers join (in any order, some remembering an address), re-run and leave.

    The model is the server's table: after every step no address has two owners,
    every owner has exactly one address, and every address is a client host.
    """

    joined = Bundle("joined")

    def __init__(self) -> None:
        super().__init__()
        self.subnet = "10.0.0.0/28"
        self.server = server_address(subnet=self.subnet)
        self.table: dict[str, str] = {self.server: SERVER}
        self.hosts = client_hosts(self.subnet)
        self.counter = 0

    def _fresh_key(self) -> str:
        self.counter += 1
        return f"peer-{self.counter}"

    @rule(target=joined, preferred=st.none() | st.integers(min_value=0, max_value=15))
    def join(self, preferred: int | None) -> str:
        key = self._fresh_key()
        pref = None if preferred is None else f"10.0.0.{preferred}"
        free = [h for h in self.hosts if h not in self.table]
        if not free:
            with pytest.raises(SubnetExhausted):
                claim_address(
                    subnet=self.subnet, peers=self.table, peer_key=key, preferred=pref
                )
            return key  # a key that never got an address; leaving it is a no-op
        got = claim_address(
            subnet=self.subnet, peers=self.table, peer_key=key, preferred=pref
        )
        assert got not in self.table, "handed out an address that is already owned"
        expected = pref if pref in free else free[0]
        assert got == expected
        self.table[got] = key
        return key

    @rule(key=joined)
    def rerun(self, key: str) -> None:
        owned = [a for a, k in self.table.items() if k == key]
        if not owned:
            return
        # Re-running with any remembered address never moves an existing peer.
        again = claim_address(
            subnet=self.subnet, peers=self.table, peer_key=key, preferred=self.hosts[-1]
        )
        assert again == owned[0]

    @rule(key=consumes(joined))
    def leave(self, key: str) -> None:
        for addr in [a for a, k in self.table.items() if k == key]:
            del self.table[addr]

    @invariant()
    def table_is_consistent(self) -> None:
        owners = list(self.table.values())
        assert len(owners) == len(set(owners)), "a key owns two addresses"
        assert self.table.get(self.server) == SERVER
        for addr, owner in self.table.items():
            if owner != SERVER:
                assert addr in self.hosts


TestClaimTable = ClaimTable.TestCase
TestClaimTable.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)


@PROPERTY
@given(subnet=subnets, order=st.permutations(list(range(12))))
def test_concurrent_joiners_in_any_order_get_distinct_lowest_addresses(
    subnet: str, order: list[int]
) -> None:
    table = {server_address(subnet=subnet): SERVER}
    hosts = client_hosts(subnet)
    handed: list[str] = []
    for i in order:
        try:
            got = claim_address(subnet=subnet, peers=table, peer_key=f"k{i}")
        except SubnetExhausted:
            assert len(handed) == len(hosts)
            continue
        assert got not in table
        table[got] = f"k{i}"
        handed.append(got)
    assert len(handed) == len(set(handed))
    # Whatever the order, the set handed out is exactly the lowest hosts, in order.
    assert handed == hosts[: len(handed)]


@PROPERTY
@given(
    subnet=subnets,
    taken_idx=st.sets(st.integers(min_value=0, max_value=255)),
    key=keys,
)
def test_claim_is_stable_across_reruns(
    subnet: str, taken_idx: set[int], key: str
) -> None:
    net = ipaddress.ip_network(subnet)
    table = {
        str(net.network_address + (i % net.num_addresses)): f"other{i}"
        for i in taken_idx
    }
    try:
        first = claim_address(subnet=subnet, peers=table, peer_key=key)
    except SubnetExhausted:
        return
    table[first] = key
    for _attempt in range(3):
        assert claim_address(subnet=subnet, peers=table, peer_key=key) == first


@PROPERTY
@given(
    subnet=subnets,
    members=st.integers(min_value=1, max_value=6),
    freed=st.sets(st.integers(min_value=0, max_value=5), min_size=1),
)
def test_freed_addresses_are_reused_lowest_first(
    subnet: str, members: int, freed: set[int]
) -> None:
    hosts = client_hosts(subnet)
    members = min(members, len(hosts))
    table = {server_address(subnet=subnet): SERVER}
    table.update({hosts[i]: f"m{i}" for i in range(members)})
    freed = {i for i in freed if i < members}
    assume(freed)
    for i in freed:
        del table[hosts[i]]
    expected = [hosts[i] for i in sorted(freed)]
    got = []
    for n in range(len(freed)):
        addr = claim_address(subnet=subnet, peers=table, peer_key=f"new{n}")
        table[addr] = f"new{n}"
        got.append(addr)
    assert got == expected


@PROPERTY
@given(
    base=st.integers(min_value=0, max_value=2**32 - 1),
    prefix=st.integers(min_value=20, max_value=30),
    offsets=st.lists(st.integers(min_value=0, max_value=2**12), max_size=40),
    outside=st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=5),
    preferred=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
)
def test_results_are_client_hosts_of_the_subnet(
    base: int,
    prefix: int,
    offsets: list[int],
    outside: list[int],
    preferred: int | None,
) -> None:
    net = ipaddress.IPv4Network((base, prefix), strict=False)
    subnet = str(net)
    taken = [str(net.network_address + (o % net.num_addresses)) for o in offsets]
    taken += [str(ipaddress.IPv4Address(o)) for o in outside]
    server = ipaddress.ip_address(server_address(subnet=subnet))
    assert server == net.network_address + 1
    pref = None if preferred is None else str(ipaddress.IPv4Address(preferred))
    for attempt in ("lowest", "claim"):
        try:
            if attempt == "lowest":
                got = lowest_free_host(subnet=subnet, taken=taken)
            else:
                got = claim_address(
                    subnet=subnet,
                    peers=dict.fromkeys(taken, "x"),
                    peer_key="me",
                    preferred=pref,
                )
        except SubnetExhausted:
            usable = {str(a) for a in net.hosts()} - {str(server)}
            assert usable <= set(taken)
            continue
        addr = ipaddress.ip_address(got)
        assert addr in net
        assert addr not in (net.network_address, net.broadcast_address, server)
        assert got not in taken


@PROPERTY
@given(
    pool_base=st.integers(min_value=0, max_value=2**32 - 1),
    pool_prefix=st.integers(min_value=16, max_value=24),
    extra=st.integers(min_value=1, max_value=6),
    taken=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2**32 - 1),
            st.integers(min_value=8, max_value=32),
        ),
        max_size=30,
    ),
    near=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2**16 - 1),
            st.integers(min_value=18, max_value=32),
        ),
        max_size=30,
    ),
)
def test_subnets_stay_in_pool_avoid_taken_and_are_lowest(
    pool_base: int,
    pool_prefix: int,
    extra: int,
    taken: list[tuple[int, int]],
    near: list[tuple[int, int]],
) -> None:
    pool = ipaddress.IPv4Network((pool_base, pool_prefix), strict=False)
    prefix = min(pool_prefix + extra, 30)
    assume(prefix > pool_prefix)
    # Mostly networks inside or around the pool, plus random ones anywhere.
    nets = [
        ipaddress.IPv4Network(
            (int(pool.network_address) + o % pool.num_addresses, p), strict=False
        )
        for o, p in near
    ]
    nets += [ipaddress.IPv4Network(t, strict=False) for t in taken]
    taken_text = [str(n) for n in nets]

    # Brute-force reference: the first aligned candidate that overlaps nothing.
    expected = next(
        (
            c
            for c in pool.subnets(new_prefix=prefix)
            if not any(c.overlaps(n) for n in nets)
        ),
        None,
    )
    try:
        got = allocate_subnet(pool=str(pool), prefix=prefix, taken=taken_text)
    except PoolExhausted:
        assert expected is None
        return
    result = ipaddress.ip_network(got)
    assert result.prefixlen == prefix
    assert result.subnet_of(pool)
    assert not any(result.overlaps(n) for n in nets)
    assert result == expected


@PROPERTY
@given(
    low=st.integers(min_value=1, max_value=65535),
    width=st.integers(min_value=0, max_value=40),
    taken=st.lists(st.integers(min_value=1, max_value=65535), max_size=50),
    near=st.lists(st.integers(min_value=0, max_value=40), max_size=40),
)
def test_ports_are_lowest_free_in_range(
    low: int, width: int, taken: list[int], near: list[int]
) -> None:
    high = min(low + width, 65535)
    used = taken + [min(low + n, 65535) for n in near]
    try:
        port = allocate_port(port_range=f"{low}-{high}", taken=used)
    except PortsExhausted:
        assert set(range(low, high + 1)) <= set(used)
        return
    assert low <= port <= high
    assert port not in used
    assert all(p in used for p in range(low, port))


names = st.text(min_size=1, max_size=80)


@PROPERTY
@given(namespace=names, network=names)
def test_interface_names_fit_and_are_stable(namespace: str, network: str) -> None:
    name = interface_name(namespace=namespace, network=network)
    assert len(name) <= 15
    assert name.startswith("dt")
    assert re.fullmatch(r"[a-z0-9]+", name[2:])
    assert name == interface_name(namespace=namespace, network=network)


@PROPERTY
@given(pairs=st.sets(st.tuples(names, names), min_size=2, max_size=50))
def test_interface_names_distinct_for_distinct_inputs(
    pairs: set[tuple[str, str]],
) -> None:
    got = {interface_name(namespace=ns, network=net) for ns, net in pairs}
    assert len(got) == len(pairs)


@PROPERTY
@given(uid=st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=64)))
def test_peer_ids_are_stable_hex_and_not_the_uid(uid: str) -> None:
    pid = peer_id(uid=uid)
    assert re.fullmatch(r"[0-9a-f]{32}", pid)
    assert pid == peer_id(uid=uid)
    assert pid != uid and pid != uid.replace("-", "").lower()
    key = peer_label_key(uid=uid)
    assert key == "sid.sightline.dtservice." + pid
    assert len(key) <= 63 and K8S_LABEL_NAME.match(key)


def test_claims_on_one_table_parse_each_address_of_it_once():
    # 100 clients claiming on a hub's table of 100 read every address of it in every claim.
    table = {f"100.96.0.{i}": f"peer{i}" for i in range(2, 102)}
    addressing._parsed.cache_clear()
    for i in range(2, 102):
        assert claim_address(subnet="100.96.0.0/24", peers=table, peer_key=f"peer{i}") == f"100.96.0.{i}"
    assert addressing._parsed.cache_info().misses == len(table)
