"""Per-peer health and packets of the right size, on a real bed with the reconciler daemon:
its /metrics shows each tunnel's handshake age, bytes and state; `kubectl get dtservices`
prints the peers and the newest handshake's age; and a 10 MB TCP transfer between two pods
completes over an underlay link whose MTU is smaller than the tunnel's packets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import free_port, kubectl_json, run_playbook, write_inventory
from test_daemon_e2e import apply, connected, get, wait_for
from test_dataplane_e2e import in_pod, ping

pytestmark = pytest.mark.integration

HUB, CLIENT = ("node0", "my-pod"), ("node1", "service-pod")
HUB_ADDRESS, CLIENT_ADDRESS = "100.96.0.1", "100.96.0.2"
TEN_MB = 10 * 1024 * 1024
SMALL_UNDERLAY_MTU = 1300  # a 1420-byte tunnel packet is 1480 bytes on the underlay


@pytest.fixture(scope="module")
def daemon(bed_factory, tmp_path_factory):
    bed = bed_factory(nodes=2)
    for node, pod in (HUB, CLIENT):
        bed.create_pod(node, pod)
    path = tmp_path_factory.mktemp("inv") / "health.json"
    write_inventory(bed, path, services={}, daemon=True)
    inventory = json.loads(path.read_text())
    port = free_port()
    inventory["federation"]["vars"].update(dtservice_daemon_metrics_port=port, dtservice_daemon_resync_seconds=15)
    path.write_text(json.dumps(inventory))
    run_playbook(bed, "playbooks/deploy.yml", inventory=str(path))
    try:
        for node, pod in (HUB, CLIENT):
            apply(bed, node, pod)
            wait_for(lambda node=node: connected(bed, node), timeout=90, what=f"{node} Connected")
    except AssertionError:
        log = bed.dir / "reconciler" / "reconciler.log"
        print("\n".join(log.read_text().splitlines()[-40:]) if log.exists() else "no daemon log")
        print(json.dumps([get(bed, node) for node, _pod in (HUB, CLIENT)], indent=1))
        raise
    return bed, f"http://127.0.0.1:{port}/metrics"


def series(url: str) -> dict[tuple[str, str, str, str], float]:
    """(metric, network, node, peer) -> value of every dtservice_peer_* sample."""
    import urllib.request

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    found = {}
    for line in text.splitlines():
        match = re.match(r'^(dtservice_peer_\w+)\{network="([^"]+)",node="([^"]+)",peer="([^"]+)"\} (\S+)$', line)
        if match:
            found[match[1], match[2], match[3], match[4]] = float(match[5])
    return found


def peer_figures(url: str, node: str, peer: str) -> dict[str, float]:
    return {metric: value for (metric, _net, n, p), value in series(url).items() if (n, p) == (node, peer)}


def test_metrics_show_each_peer_and_bytes_grow_after_a_ping(daemon):
    bed, url = daemon
    wanted = {"dtservice_peer_handshake_age_seconds", "dtservice_peer_receive_bytes_total",
              "dtservice_peer_transmit_bytes_total", "dtservice_peer_up"}
    hub = wait_for(lambda: (f := peer_figures(url, "node0", CLIENT_ADDRESS)) and wanted <= set(f) and f,
                   timeout=60, what="the hub's series for its client")
    client = wait_for(lambda: (f := peer_figures(url, "node1", HUB_ADDRESS)) and wanted <= set(f) and f,
                      timeout=60, what="the client's series for its hub")
    for figures in (hub, client):
        assert figures["dtservice_peer_up"] == 1.0
        assert 0 <= figures["dtservice_peer_handshake_age_seconds"] < 180
    assert ping(bed, *CLIENT, HUB_ADDRESS, count=20) == 20
    sent = 20 * (56 + 8 + 20)  # ICMP payload, ICMP and IP headers inside the tunnel
    tx, rx = "dtservice_peer_transmit_bytes_total", "dtservice_peer_receive_bytes_total"
    grown = wait_for(lambda: (f := peer_figures(url, "node1", HUB_ADDRESS)) and f[tx] >= client[tx] + sent and f,
                     timeout=60, what="the client's transmitted bytes to grow by the pings")
    assert grown[rx] >= client[rx] + sent
    hub_now = wait_for(lambda: (f := peer_figures(url, "node0", CLIENT_ADDRESS)) and f[rx] >= hub[rx] + sent and f,
                       timeout=60, what="the hub's received bytes to grow by the pings")
    assert hub_now["dtservice_peer_up"] == 1.0


def test_kubectl_get_prints_the_peers_and_the_newest_handshakes_age(daemon):
    bed, _url = daemon

    def columns(node: str) -> dict[str, str]:
        out = bed.kubectl(bed.node(node), "get", "dtservices", "-n", bed.node(node).namespace, admin=True).stdout
        header, row = out.splitlines()[:2]
        # Cells are aligned under their headers; an empty one is blank.
        starts = [match.start() for match in re.finditer(r"\S+", header)] + [None]
        return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, starts[1:], strict=False)}

    for node, _pod in (HUB, CLIENT):
        shown = wait_for(lambda node=node: (c := columns(node)) and c["PEERS"] and c["HANDSHAKE"] and c,
                         timeout=60, what=f"{node}'s health columns")
        assert shown["STATUS"] == "Connected" and shown["PEERS"] == "1", shown
        assert re.fullmatch(r"\d+s|[1-3]m\d*s?", shown["HANDSHAKE"]), shown
        obj = get(bed, node)
        assert obj["status"] == "Connected", "the status stays one word"
        assert set(obj) == {"apiVersion", "kind", "metadata", "peers", "spec", "status"}
        described = bed.kubectl(bed.node(node), "describe", "dtservice", "myservice", "-n",
                                bed.node(node).namespace, admin=True).stdout
        keys = [line.split(":", 1)[0] for line in described.splitlines() if line and not line.startswith(" ")]
        assert keys == ["Name", "Namespace", "Labels", "Annotations", "API Version", "Kind", "Metadata", "Peers",
                        "Spec", "Status", "Events"], described
        assert re.search(r"^Annotations:\s+sid\.sightlineinnovation\.com/latest-handshake: ", described,
                         re.MULTILINE), described
        assert re.search(r"^Status:\s+Connected$", described, re.MULTILINE), described


def clamps(bed, node: str, pod: str) -> list[str]:
    rules = in_pod(bed, node, pod, "iptables", "-t", "mangle", "-S", check=True).stdout.splitlines()
    return sorted(rule for rule in rules if "TCPMSS" in rule)


SINK = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
print("ready", flush=True)
conn, _ = server.accept()
conn.settimeout(float(sys.argv[3]))
total = 0
try:
    while chunk := conn.recv(65536):
        total += len(chunk)
except socket.timeout:
    pass
print(total, flush=True)
"""
SOURCE = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]))
conn.sendall(b"x" * int(sys.argv[3]))
conn.shutdown(socket.SHUT_WR)
"""


def transfer(bed, *, port: int, stall: float) -> int:
    """Bytes the client's pod received of 10 MB the hub's pod sent over the tunnel; the receiver
    gives up after ``stall`` seconds without data."""
    sink = subprocess.Popen(["ip", "netns", "exec", bed.pod_netns(*CLIENT), sys.executable, "-c", SINK,
                             CLIENT_ADDRESS, str(port), str(stall)], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        in_pod(bed, *HUB, sys.executable, "-c", SOURCE, CLIENT_ADDRESS, str(port), str(TEN_MB), str(stall + 5))
        received = sink.communicate(timeout=stall + 120)[0]
        return int(received.strip())
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def test_a_10mb_tcp_transfer_completes_over_a_smaller_underlay_mtu(daemon, record_property):
    bed, _url = daemon
    client_netns = bed.node("node1").netns
    assert all("--set-mss 1380" in rule for rule in clamps(bed, *CLIENT)) and len(clamps(bed, *CLIENT)) == 2
    assert transfer(bed, port=5001, stall=10) == TEN_MB
    try:
        # node1's underlay link now drops the tunnel's full-size packets, with no ICMP back (a
        # veth too small for a frame drops it silently): a path-MTU black hole.
        subprocess.run(["ip", "-n", client_netns, "link", "set", "eth0", "mtu", str(SMALL_UNDERLAY_MTU)], check=True)
        started = time.monotonic()
        # Until a pass reads the smaller link, the clamps are sized for 1500 (resync is 15 s).
        wait_for(lambda: all("--set-mss 1192" in rule for rule in clamps(bed, *CLIENT)), timeout=60,
                 what="node1's pass to clamp to the smaller link")
        record_property("seconds_to_reclamp", round(time.monotonic() - started, 1))
        assert all("--set-mss 1380" in rule for rule in clamps(bed, *HUB)), "the hub's link is unchanged"
        assert transfer(bed, port=5002, stall=20) == TEN_MB
        # Without the clamp the same transfer stalls: full-size segments never arrive.
        for rule in clamps(bed, *CLIENT):
            in_pod(bed, *CLIENT, "iptables", "-t", "mangle", *rule.replace("-A ", "-D ", 1).split(), check=True)
        unclamped = transfer(bed, port=5003, stall=8)
        record_property("unclamped_bytes", unclamped)
        assert unclamped < TEN_MB, "without the clamp the black hole should have stalled the transfer"
        # ... and the next pass puts the clamps back.
        wait_for(lambda: len(clamps(bed, *CLIENT)) == 2, timeout=60, what="the clamps to be repaired")
    finally:
        subprocess.run(["ip", "-n", client_netns, "link", "set", "eth0", "mtu", "1500"], check=True)


def test_a_tunnel_past_the_reject_window_is_reported_and_repaired(daemon):
    """The hub's answers to node1 are dropped on node1's underlay link: once its newest
    handshake is older than 180 s, a pass gives the client a HandshakeStale Event, a fresh
    handshake attempt and (none coming) ServerUnreachable, and /metrics says it is down; with
    the path back, the next passes make it Connected again."""
    bed, url = daemon
    host, port = get(bed, "node1")["spec"]["server"]["endpoint"].rsplit(":", 1)
    drop = ["INPUT", "-p", "udp", "-s", host, "--sport", port, "-j", "DROP"]
    node_netns = bed.node("node1").netns
    subprocess.run(["ip", "netns", "exec", node_netns, "iptables", "-I", *drop], check=True)
    try:
        wait_for(lambda: (get(bed, "node1") or {}).get("status") == "ServerUnreachable", timeout=330,
                 what="the quiet client to be reported ServerUnreachable")
        events = kubectl_json(bed, "node1", "get", "events", "-n", bed.node("node1").namespace)["items"]
        assert any(e["reason"] == "HandshakeStale" and e["type"] == "Warning" for e in events), events
        down = wait_for(lambda: (f := peer_figures(url, "node1", HUB_ADDRESS)).get("dtservice_peer_up") == 0.0 and f,
                        timeout=60, what="/metrics to show the tunnel down")
        assert down["dtservice_peer_handshake_age_seconds"] >= 180
    finally:
        subprocess.run(["ip", "netns", "exec", node_netns, "iptables", "-D", *drop], check=True)
    wait_for(lambda: connected(bed, "node1"), timeout=180, what="the client to be repaired")
    assert ping(bed, *CLIENT, HUB_ADDRESS) == 3
