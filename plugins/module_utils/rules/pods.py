"""Which pod a dtService attaches, and whether this federation node may attach it now.

Owns two rules, both pure:

- ``select``: ``spec.podSelector`` names a pod of the dtService's namespace, as in the seed.
  When no pod has that name, the pods labelled ``app: <podSelector>`` stand in for it, so a
  Deployment's replacement pod (a new name, the same label) is attached again: the Running
  one that is not being deleted, oldest first.
- ``judge``: a selected pod is attachable when it is Running with an IP, is not being
  deleted, is not on the host's network, and its kubelet node is one this federation node's
  agent serves; otherwise the status word and message that say why.
- ``deletion_asked``: when a pod's deletion was asked for (a hub's failover grace counts
  from then, not from when a pass first saw it).
"""

from __future__ import annotations

import calendar
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status

APP_LABEL = "app"


def _key(pod: Mapping[str, Any]) -> tuple:
    status, meta = pod.get("status") or {}, pod["metadata"]
    usable = status.get("phase") == "Running" and not meta.get("deletionTimestamp")
    return (not usable, meta.get("creationTimestamp") or "", meta["name"])


def select(pods: Mapping[str, Mapping[str, Any]], selector: str) -> Mapping[str, Any] | None:
    """The pod ``selector`` picks among a namespace's pods (name -> pod), or None."""
    if selector in pods:
        return pods[selector]
    labelled = [p for p in pods.values() if (p["metadata"].get("labels") or {}).get(APP_LABEL) == selector]
    return min(labelled, key=_key) if labelled else None


def judge(pod: Mapping[str, Any] | None, *, selector: str,
          served_nodes: Collection[str]) -> tuple[str, str] | None:
    """None when the pod can get its interface now, else (status, message)."""
    if pod is None:
        return Status.WAITING_FOR_POD, f"pod {selector!r} does not exist yet"
    name = pod["metadata"]["name"]
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if pod["metadata"].get("deletionTimestamp"):
        return Status.WAITING_FOR_POD, f"pod {name!r} is being deleted"
    if spec.get("hostNetwork"):
        return Status.POD_REFUSED, (f"pod {name!r} uses the host's network: its interface would be the machine's, "
                                    "so it gets none")
    if phase in ("Failed", "Succeeded"):
        return Status.POD_FAILED, f"pod {name!r} has ended ({phase}); a new pod is attached when it runs"
    node = spec.get("nodeName")
    if node and node not in served_nodes:
        return Status.POD_ELSEWHERE, (f"pod {name!r} runs on Kubernetes node {node!r}, which this federation "
                                      f"node's agent does not serve (it serves {', '.join(sorted(served_nodes))}); "
                                      "it is attached if it moves to one of those")
    if phase != "Running" or not status.get("podIP"):
        return Status.WAITING_FOR_POD, f"pod {name!r} is {phase}" + ("" if phase != "Running" else " without an IP yet")
    return None


def deletion_asked(pod: Mapping[str, Any] | None) -> float | None:
    """The epoch second a pod's deletion was asked for (its ``deletionTimestamp`` is when the
    deletion will be forced, its grace period later); None when it is not being deleted."""
    meta = (pod or {}).get("metadata") or {}
    when = meta.get("deletionTimestamp")
    if not when:
        return None
    try:
        forced = calendar.timegm(datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").timetuple())
    except (TypeError, ValueError):
        return None
    return float(forced - int(meta.get("deletionGracePeriodSeconds") or 0))
