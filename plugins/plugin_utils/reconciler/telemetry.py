"""What the reconciler tells its operators: JSON log lines and Prometheus metrics.

Owns the log format (one JSON object a line: ``ts``, ``level``, ``msg`` and the fields of the
call, e.g. ``node``, ``run``, ``seconds``; ``bench/bench.py`` reads the ``reconciled`` lines)
and the metric names. The metrics endpoint itself is started by ``main``.
"""

from __future__ import annotations

import functools
import json
import logging
from types import SimpleNamespace
from typing import Any


@functools.cache
def metrics() -> Any:
    """The daemon's metrics, made on first use: prometheus_client is the daemon's library, not
    one Ansible loads with the collection's plugins."""
    from prometheus_client import Counter, Gauge, Histogram

    return SimpleNamespace(
        reconciles=Counter("dtservice_reconcile_total", "Reconcile runs by node and result", ["node", "result"]),
        duration=Histogram("dtservice_reconcile_duration_seconds", "Wall time of one reconcile run", ["node"],
                           buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300, 600)),
        watch_restarts=Counter("dtservice_watch_restarts_total", "Watches started again", ["node", "kind"]),
        events=Counter("dtservice_watch_events_total", "Watch events seen", ["node", "kind", "type"]),
        key_rotations=Counter("dtservice_key_rotations_total", "WireGuard key pairs replaced", ["node"]),
        pending=Gauge("dtservice_nodes_pending", "Nodes waiting for a reconcile"),
        running=Gauge("dtservice_runs_running", "Reconcile runs in progress"))


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
