"""A tunnel's health (rules/health.py): freshness on WireGuard's clock, the figures a pass
hands to the daemon, and when the annotations behind the printer columns are rewritten; and
the daemon's per-peer series (telemetry.Tunnels) made from those figures."""

from __future__ import annotations

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    HANDSHAKE_ANNOTATION,
    PEERS_ANNOTATION,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.health import (
    REJECT_AFTER,
    REKEY_AFTER,
    annotation_changes,
    fresh,
    proven,
    recorded_handshake,
    stamp,
    tunnel_figures,
)
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.probe import LivePeer
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.telemetry import Tunnels

NOW = 1_800_000_000


def test_after_a_new_key_only_a_handshake_made_since_proves_the_tunnel():
    switched = NOW - 10.3  # in the second NOW - 11
    assert proven(NOW - 5, key_since=switched, now=NOW)
    assert proven(NOW - 11, key_since=switched, now=NOW), "the second of the switch counts"
    assert not proven(NOW - 12, key_since=switched, now=NOW), "the old key's session proves nothing"
    assert proven(NOW - 12, key_since=None, now=NOW), "without a new key a fresh one does"
    assert not proven(NOW - REJECT_AFTER, key_since=None, now=NOW)
    assert not proven(0, key_since=None, now=NOW)


def test_a_handshake_is_fresh_until_wireguard_refuses_its_keys():
    assert fresh(NOW - 1, now=NOW) and fresh(NOW - REJECT_AFTER + 1, now=NOW)
    assert not fresh(NOW - REJECT_AFTER, now=NOW)
    assert not fresh(0, now=NOW), "never is not fresh"


def test_figures_name_each_wanted_peer_by_address_with_zeros_until_it_is_on_the_interface():
    live = {"hubkey": LivePeer(allowed_ips=[], endpoint=None, keepalive=25, latest_handshake=NOW - 5,
                               rx_bytes=92, tx_bytes=180),
            "gone": LivePeer(allowed_ips=[], endpoint=None, keepalive=0, latest_handshake=NOW, rx_bytes=1, tx_bytes=1)}
    figures = tunnel_figures(live, addresses={"newkey": "100.96.0.3", "hubkey": "100.96.0.1"})
    assert figures == [
        {"peer": "100.96.0.1", "public_key": "hubkey", "latest_handshake": NOW - 5, "rx_bytes": 92, "tx_bytes": 180},
        {"peer": "100.96.0.3", "public_key": "newkey", "latest_handshake": 0, "rx_bytes": 0, "tx_bytes": 0},
    ]


def test_a_handshake_wireguard_forgot_is_carried_and_a_newer_live_one_wins():
    restarted = {"hubkey": LivePeer(allowed_ips=[], endpoint=None, keepalive=25, latest_handshake=0,
                                    rx_bytes=0, tx_bytes=148)}
    [figure] = tunnel_figures(restarted, addresses={"hubkey": "100.96.0.1"}, known={"hubkey": NOW - 400})
    assert figure["latest_handshake"] == NOW - 400 and figure["tx_bytes"] == 148
    live = {"hubkey": LivePeer(allowed_ips=[], endpoint=None, keepalive=25, latest_handshake=NOW - 2,
                               rx_bytes=92, tx_bytes=180)}
    [figure] = tunnel_figures(live, addresses={"hubkey": "100.96.0.1"}, known={"hubkey": NOW - 400})
    assert figure["latest_handshake"] == NOW - 2
    [figure] = tunnel_figures({}, addresses={"newkey": "100.96.0.3"}, known={"hubkey": NOW - 400})
    assert figure["latest_handshake"] == 0, "a handshake is carried only for the key it was made with"


def test_a_recorded_handshake_is_read_back_only_past_the_reject_window():
    """The owner edits the annotation: it may say since when her tunnel is down, never that it is up."""
    assert recorded_handshake({HANDSHAKE_ANNOTATION: stamp(NOW - 400)}, now=NOW) == NOW - 400
    assert recorded_handshake({HANDSHAKE_ANNOTATION: stamp(NOW - REJECT_AFTER)}, now=NOW) == NOW - REJECT_AFTER
    assert recorded_handshake({HANDSHAKE_ANNOTATION: stamp(NOW - REJECT_AFTER + 1)}, now=NOW) == 0
    assert recorded_handshake({HANDSHAKE_ANNOTATION: stamp(NOW + 3600)}, now=NOW) == 0, "a time to come"
    assert recorded_handshake({HANDSHAKE_ANNOTATION: "yesterday"}, now=NOW) == 0
    assert recorded_handshake({}, now=NOW) == 0 and recorded_handshake(None, now=NOW) == 0


def test_the_first_pass_records_both_annotations():
    assert annotation_changes(None, peers=2, newest=NOW - 3, now=NOW) == {
        PEERS_ANNOTATION: "2", HANDSHAKE_ANNOTATION: stamp(NOW - 3)}
    assert stamp(NOW) == "2027-01-15T08:00:00Z"


def test_a_recorded_handshake_stands_for_one_rekey_so_a_pass_right_after_writes_nothing():
    recorded = {PEERS_ANNOTATION: "2", HANDSHAKE_ANNOTATION: stamp(NOW - 100)}
    assert annotation_changes(recorded, peers=2, newest=NOW - 100, now=NOW) == {}
    assert annotation_changes(recorded, peers=2, newest=NOW - 10, now=NOW) == {}, "a newer handshake waits"
    later = NOW - 100 + REKEY_AFTER + 1
    assert annotation_changes(recorded, peers=2, newest=NOW - 10, now=later) == {HANDSHAKE_ANNOTATION: stamp(NOW - 10)}


def test_a_quiet_tunnel_is_not_rewritten_and_its_column_keeps_ageing():
    recorded = {PEERS_ANNOTATION: "1", HANDSHAKE_ANNOTATION: stamp(NOW - 1000)}
    assert annotation_changes(recorded, peers=1, newest=NOW - 1000, now=NOW) == {}


def test_peers_changes_and_forged_or_lost_handshakes_are_rewritten():
    recorded = {PEERS_ANNOTATION: "2", HANDSHAKE_ANNOTATION: stamp(NOW - 10)}
    assert annotation_changes(recorded, peers=3, newest=NOW - 10, now=NOW) == {PEERS_ANNOTATION: "3"}
    future = {PEERS_ANNOTATION: "2", HANDSHAKE_ANNOTATION: stamp(NOW + 3600)}
    assert annotation_changes(future, peers=2, newest=NOW - 10, now=NOW) == {HANDSHAKE_ANNOTATION: stamp(NOW - 10)}
    garbage = {PEERS_ANNOTATION: "2", HANDSHAKE_ANNOTATION: "yesterday"}
    assert annotation_changes(garbage, peers=2, newest=NOW - 10, now=NOW) == {HANDSHAKE_ANNOTATION: stamp(NOW - 10)}
    # A recreated interface that has not shaken hands yet: the old time goes.
    assert annotation_changes(recorded, peers=2, newest=0, now=NOW) == {HANDSHAKE_ANNOTATION: None}


def test_the_daemons_series_are_per_network_node_and_peer_with_ages_at_scrape_time():
    clock = [float(NOW)]
    tunnels = Tunnels(clock=lambda: clock[0])
    tunnels.passed("node0", {"myservice": [
        {"peer": "100.96.0.2", "public_key": "k2", "latest_handshake": NOW - 20, "rx_bytes": 500, "tx_bytes": 700},
        {"peer": "100.96.0.3", "public_key": "k3", "latest_handshake": 0, "rx_bytes": 0, "tx_bytes": 0}]})
    samples = tunnels.samples()
    two, three = ("myservice", "node0", "100.96.0.2"), ("myservice", "node0", "100.96.0.3")
    assert samples["handshake_age"] == [(two, 20.0)], "a peer that never shook hands has no age"
    assert samples["receive"] == [(two, 500.0), (three, 0.0)]
    assert samples["transmit"] == [(two, 700.0), (three, 0.0)]
    assert samples["up"] == [(two, 1.0), (three, 0.0)]
    clock[0] += REJECT_AFTER
    assert tunnels.samples()["up"][0] == (two, 0.0) and tunnels.samples()["handshake_age"][0][1] == 200.0
    tunnels.passed("node0", {})
    assert tunnels.samples()["receive"] == [], "a node's next pass replaces its figures"


def test_the_collector_exposes_the_documented_metric_names():
    from prometheus_client import CollectorRegistry, generate_latest

    tunnels = Tunnels(clock=lambda: float(NOW))
    tunnels.passed("node1", {"myservice": [
        {"peer": "100.96.0.1", "public_key": "k1", "latest_handshake": NOW - 2, "rx_bytes": 9, "tx_bytes": 8}]})
    registry = CollectorRegistry()
    registry.register(tunnels)
    text = generate_latest(registry).decode()
    labels = '{network="myservice",node="node1",peer="100.96.0.1"}'
    for line in [f"dtservice_peer_handshake_age_seconds{labels} 2.0", f"dtservice_peer_receive_bytes_total{labels} 9.0",
                 f"dtservice_peer_transmit_bytes_total{labels} 8.0", f"dtservice_peer_up{labels} 1.0"]:
        assert line in text, text
