"""The reconciler's settings: the JSON file ``roles/dtservice_daemon`` writes (``settings.json.j2``).

Owns the names in that file, their defaults (those of the role's ``defaults/main.yml``) and
their checks, so that a bad file stops the daemon at start with a message instead of
failing later in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.election import LeaseTiming
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import Timing


@dataclass(frozen=True)
class WatchedNode:
    """A federation node as the daemon sees it: the namespace it watches, and how to reach it."""

    name: str
    namespace: str
    kubeconfig: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class LeaseSettings:
    """The Lease the reconcilers elect their leader with: its name, the namespace (and the
    cluster, by kubeconfig and context) it lives in, and its timing."""

    node: WatchedNode
    name: str = "dtservice-reconciler"
    timing: LeaseTiming = LeaseTiming()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeaseSettings:
        if not data.get("namespace"):
            raise ValueError("the lease names no namespace")
        defaults = LeaseTiming()
        timing = LeaseTiming(duration=float(data.get("duration_seconds", defaults.duration)),
                             renew_deadline=float(data.get("renew_deadline_seconds", defaults.renew_deadline)),
                             retry_period=float(data.get("retry_period_seconds", defaults.retry_period)))
        timing.check()
        node = WatchedNode(name=f"lease/{data['namespace']}", namespace=data["namespace"],
                           kubeconfig=data.get("kubeconfig") or None, context=data.get("context") or None)
        return cls(node=node, name=data.get("name") or cls.name, timing=timing)


@dataclass(frozen=True)
class Settings:
    nodes: tuple[WatchedNode, ...]
    project_dir: Path
    inventory: tuple[str, ...]
    work_dir: Path
    timing: Timing = Timing()
    run_timeout: float = 600.0
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    # None: this reconciler is the only one and leads without a Lease.
    lease: LeaseSettings | None = None
    # Seconds after which a key pair is rotated (0: never by age); given to each run.
    key_max_age: float = 0.0

    @property
    def playbook(self) -> Path:
        return self.project_dir / "playbooks" / "reconcile.yml"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        missing = [key for key in ("nodes", "project_dir", "inventory", "work_dir") if key not in data]
        if missing:
            raise ValueError(f"the settings lack {', '.join(missing)}")
        nodes = tuple(WatchedNode(name=n["name"], namespace=n["namespace"], kubeconfig=n.get("kubeconfig") or None,
                                  context=n.get("context") or None) for n in data["nodes"])
        if len({n.name for n in nodes}) != len(nodes):
            raise ValueError("the settings name a node twice")
        defaults = Timing()
        timing = Timing(debounce=float(data.get("debounce_seconds", defaults.debounce)),
                        resync=float(data.get("resync_seconds", defaults.resync)),
                        max_backoff=float(data.get("max_backoff_seconds", defaults.max_backoff)),
                        parallel_runs=int(data.get("parallel_runs", defaults.parallel_runs)))
        run_timeout = float(data.get("run_timeout_seconds", cls.run_timeout))
        key_max_age = float(data.get("key_max_age_seconds") or 0)
        if key_max_age < 0:
            raise ValueError("key_max_age_seconds must be >= 0")
        if timing.debounce < 0 or timing.resync <= 0 or timing.max_backoff < 1 or timing.parallel_runs < 1 \
                or run_timeout < 1:
            raise ValueError("debounce_seconds must be >= 0, resync_seconds > 0, max_backoff_seconds, "
                             "parallel_runs and run_timeout_seconds >= 1")
        inventory = data["inventory"]
        return cls(nodes=nodes, project_dir=Path(data["project_dir"]),
                   inventory=(inventory,) if isinstance(inventory, str) else tuple(inventory),
                   work_dir=Path(data["work_dir"]), timing=timing, run_timeout=run_timeout,
                   metrics_address=data.get("metrics_address", cls.metrics_address),
                   metrics_port=int(data.get("metrics_port") or 0),
                   env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
                   lease=LeaseSettings.from_dict(data["lease"]) if data.get("lease") else None,
                   key_max_age=key_max_age)

    @classmethod
    def load(cls, path: str | Path) -> Settings:
        return cls.from_dict(json.loads(Path(path).read_text()))
