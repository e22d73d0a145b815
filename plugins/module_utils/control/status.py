"""A dtService's status word and the Events that say why.

Owns writing ``status`` (on the status subresource, only when the word changes) and the
Event that goes with a word off the happy path: a Warning for what a user must act on, a
Normal one for what is waited for (``contract.WAITING``); the quiet words
(``contract.QUIET``) get none, as the seed's happy path shows ``Events: <none>``. Used by
the control plane's pass, the node agent and the callback that records a failed run.

Also owns recording a tunnel's health in the dtService's annotations (``write_health``; when
is ``rules.health``'s), and how an unexpected failure is told on the object that caused it (``describe``):
every step catches what goes wrong with one dtService, so that it stays with that dtService.
"""

from __future__ import annotations

import copy

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Conflict, NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import health

MESSAGE_LENGTH = 300


def describe(error: BaseException) -> str:
    """What a status Event says of an unexpected failure. An API server's refusal is quoted; a
    decoding error is only named, since its text quotes the bytes it met (a key, perhaps)."""
    if isinstance(error, ApiError):
        return f"an API server did not answer as expected: {str(error)[:MESSAGE_LENGTH]}"
    if isinstance(error, UnicodeError):
        return f"unexpected {type(error).__name__} (its text is withheld: it may quote secret data)"
    return f"unexpected {type(error).__name__}: {str(error)[:MESSAGE_LENGTH]}"


def try_write_status(*, cluster: Cluster, node: NodeRef, service: dict, status: str, message: str) -> dict | None:
    """``write_status`` for a step that has already failed: a status that cannot be written
    (the API server may be what failed) is left to the next pass, not raised."""
    try:
        return write_status(cluster=cluster, node=node, service=service, status=status, message=message)
    except Exception:  # noqa: BLE001 - the failure being reported is already in the outcome
        return None


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


def write_health(*, cluster: Cluster, node: NodeRef, service: dict, peers: int, newest: int, now: float) -> bool:
    """Record the number of peers and the newest handshake in the dtService's annotations, when
    ``rules.health`` says the recorded ones no longer stand; True if written. A failed write is
    left to the next pass: the figures are for people, the tunnel does not depend on them."""
    changes = health.annotation_changes(service["metadata"].get("annotations"), peers=peers, newest=newest, now=now)
    if not changes:
        return False
    try:
        cluster.patch_service_annotations(node, service["metadata"]["name"], changes)
    except Exception:  # noqa: BLE001 - see the docstring
        return False
    return True
