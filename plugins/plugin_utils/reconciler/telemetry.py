"""What the reconciler tells its operators: JSON log lines and Prometheus metrics.

Owns the log format (one JSON object a line: ``ts``, ``level``, ``msg`` and the fields of the
call, e.g. ``node``, ``run``, ``seconds``; ``bench/bench.py`` reads the ``reconciled`` lines)
and the metric names. The metrics endpoint itself is started by ``main``.

Per-peer health comes from the passes the daemon runs anyway, not from probes of its own: a
pass reads every interface whole (``wg show dump`` in the pod, ``rules/probe.py``) and the
callback hands each node's per-peer figures back with its statuses, so the figures cost no
extra process and reach a daemon that may run on another machine than the pods. They are as
old as the node's last pass (``resync_seconds`` at most when nothing changes); a handshake's
age is computed at scrape time from the handshake's own time, so it is exact unless a newer
handshake happened since that pass.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.rules import health


@functools.cache
def metrics() -> Any:
    """The daemon's metrics, made on first use: prometheus_client is the daemon's library, not
    one Ansible loads with the collection's plugins."""
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram

    tunnels = Tunnels()
    REGISTRY.register(tunnels)
    return SimpleNamespace(
        tunnels=tunnels,
        reconciles=Counter("dtservice_reconcile_total", "Reconcile runs by node and result", ["node", "result"]),
        duration=Histogram("dtservice_reconcile_duration_seconds", "Wall time of one reconcile run", ["node"],
                           buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300, 600)),
        watch_restarts=Counter("dtservice_watch_restarts_total", "Watches started again", ["node", "kind"]),
        events=Counter("dtservice_watch_events_total", "Watch events seen", ["node", "kind", "type"]),
        key_rotations=Counter("dtservice_key_rotations_total", "WireGuard key pairs replaced", ["node"]),
        echoes=Counter("dtservice_watch_echoes_total", "Watch events that were a run's own writes (no run started)",
                       ["node", "kind"]),
        leader=Gauge("dtservice_reconciler_leader", "1 while this reconciler may start runs (it holds the Lease, "
                     "or none is configured), else 0"),
        pending=Gauge("dtservice_nodes_pending", "Nodes waiting for a reconcile"),
        running=Gauge("dtservice_runs_running", "Reconcile runs in progress"))


class Tunnels:
    """The per-peer series, from the figures of each node's last pass (a Prometheus collector)."""

    LABELS = ("network", "node", "peer")

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def passed(self, node: str, tunnels: Mapping[str, list[dict[str, Any]]]) -> None:
        """A node's pass read these (dtService -> per-peer figures); they replace what it had."""
        with self._lock:
            self._nodes[node] = {network: list(peers) for network, peers in tunnels.items()}

    def samples(self) -> dict[str, list[tuple[tuple[str, str, str], float]]]:
        """Metric name -> (labels, value) of every peer, ages as of now."""
        now = self._clock()
        found: dict[str, list[tuple[tuple[str, str, str], float]]] = {
            "handshake_age": [], "receive": [], "transmit": [], "up": []}
        with self._lock:
            for node, networks in sorted(self._nodes.items()):
                for network, peers in sorted(networks.items()):
                    for peer in peers:
                        labels = (network, node, peer["peer"])
                        latest = peer.get("latest_handshake") or 0
                        if latest:
                            found["handshake_age"].append((labels, max(now - latest, 0.0)))
                        found["receive"].append((labels, float(peer.get("rx_bytes") or 0)))
                        found["transmit"].append((labels, float(peer.get("tx_bytes") or 0)))
                        found["up"].append((labels, 1.0 if health.fresh(latest, now=now) else 0.0))
        return found

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        samples = self.samples()
        families: list[Any] = [
            GaugeMetricFamily("dtservice_peer_handshake_age_seconds",
                              "Seconds since the latest WireGuard handshake with the peer (none if never)",
                              labels=self.LABELS),
            CounterMetricFamily("dtservice_peer_receive_bytes", "Bytes received from the peer over the tunnel",
                                labels=self.LABELS),
            CounterMetricFamily("dtservice_peer_transmit_bytes", "Bytes sent to the peer over the tunnel",
                                labels=self.LABELS),
            GaugeMetricFamily("dtservice_peer_up", f"1 while the latest handshake is under {health.REJECT_AFTER}s old",
                              labels=self.LABELS),
        ]
        for family, key in zip(families, ("handshake_age", "receive", "transmit", "up"), strict=True):
            for labels, value in samples[key]:
                family.add_metric(list(labels), value)
            yield family


log = logging.getLogger("dtservice-reconciler")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True, default=str)


def say(level: int, message: str, *, exc_info: Any = False, **fields: Any) -> None:
    log.log(level, message, extra={"fields": fields}, exc_info=exc_info)
