"""A dtService's status word and the Events that say why.

Owns writing ``status`` (on the status subresource, only when the word changes) and the
Event that goes with a word off the happy path: a Warning for what a user must act on, a
Normal one for what is waited for (``contract.WAITING``); the quiet words
(``contract.QUIET``) get none, as the seed's happy path shows ``Events: <none>``. Used by
the control plane's pass, the node agent and the callback that records a failed run.
"""

from __future__ import annotations

import copy

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Conflict, NodeRef


def write_status(*, cluster: Cluster, node: NodeRef, service: dict, status: str, message: str) -> dict | None:
    """Set the dtService's status word (and an Event saying why, off the happy path) when it
    changes; returns the written object, or None when nothing was written."""
    if service.get("status") == status:
        return None
    body = copy.deepcopy(service)
    body["status"] = status
    try:
        written = cluster.replace_service_status(node, body)
    except Conflict:
        return None  # the object moved on under us; the next pass writes it
    if status not in contract.QUIET:
        cluster.record_event(node, service=service, reason=status, message=message or status,
                             warning=status not in contract.WAITING)
    return written
