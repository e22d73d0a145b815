"""A tunnel's health: how fresh its handshakes are, and what a dtService's object records of it.

Owns, without touching the machine (standard library and ``contract`` only):

- WireGuard's clock: a session's keys are refused ``REJECT_AFTER`` (180 s) after its handshake,
  and a live tunnel (traffic or keepalive) makes a new handshake every ``REKEY_AFTER`` (120 s),
  so a handshake older than ``REJECT_AFTER`` means the tunnel carries nothing (``fresh``);
- the per-peer figures a pass hands to the reconciler daemon (``tunnel_figures``), with the
  handshake time WireGuard forgets when a client's server peer is configured afresh to start
  a new handshake (the pass carries it from before, or from the object's record of it);
- the two annotations ``kubectl get dtservices`` shows as printer columns (the number of
  peers, the time of the newest handshake), and when a pass rewrites them
  (``annotation_changes``): they live in the annotations because the object's body keeps the
  seed's shape (``status`` is one word), and the handshake time is rewritten only once the
  recorded one is more than ``REKEY_AFTER`` old, so a healthy tunnel costs one write per
  rekey at most and a pass right after another writes nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
    HANDSHAKE_ANNOTATION,
    PEERS_ANNOTATION,
)

__all__ = ["REJECT_AFTER", "REKEY_AFTER", "annotation_changes", "fresh", "recorded_handshake", "stamp",
           "tunnel_figures"]

REKEY_AFTER = 120
REJECT_AFTER = 180


def fresh(latest_handshake: int, *, now: float) -> bool:
    """True if a handshake at ``latest_handshake`` (epoch seconds, 0 = never) still carries traffic."""
    return bool(latest_handshake) and now - latest_handshake < REJECT_AFTER


def proven(latest_handshake: int, *, key_since: float | None, now: float) -> bool:
    """Whether a client's newest handshake with its server proves its tunnel: fresh, and not
    older than the key its interface took at ``key_since`` (None: none in this pass). Whole
    seconds, as WireGuard tells them: one in the second of the switch counts."""
    return fresh(latest_handshake, now=now) and (key_since is None or latest_handshake >= int(key_since))


def stamp(epoch: int) -> str:
    """An epoch second as the RFC 3339 time Kubernetes prints (and a ``date`` column ages)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str | None) -> int | None:
    try:
        parsed = datetime.datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return int(parsed.replace(tzinfo=datetime.UTC).timestamp())


def recorded_handshake(annotations: Mapping[str, str] | None, *, now: float) -> int:
    """The newest handshake a dtService's object records (epoch seconds), if it is past the
    reject window; else 0. Its owner can edit the object, so the record can only say since
    when a tunnel is down, never that it is up; and a fresh start of a handshake, which is
    what makes WireGuard forget one, happens only past that window."""
    at = _epoch((annotations or {}).get(HANDSHAKE_ANNOTATION)) or 0
    return at if at and now - at >= REJECT_AFTER else 0


def tunnel_figures(live: Mapping[str, Any], *, addresses: Mapping[str, str],
                   known: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """One entry per wanted peer (public key -> overlay address in ``addresses``): its address,
    key, latest handshake (epoch seconds, 0 = never) and bytes received and sent, as ``live``
    (public key -> ``probe.LivePeer``) has them; a peer not on the interface yet has zeros.

    ``known`` (public key -> epoch seconds) is a handshake seen before ``live`` was read:
    configuring a peer afresh makes WireGuard forget its latest handshake, and a tunnel down
    for minutes must still say since when, not "never"."""
    figures = []
    for key, address in sorted(addresses.items(), key=lambda item: item[1]):
        peer = live.get(key)
        figures.append({"peer": address, "public_key": key,
                        "latest_handshake": max(getattr(peer, "latest_handshake", 0), (known or {}).get(key, 0)),
                        "rx_bytes": getattr(peer, "rx_bytes", 0), "tx_bytes": getattr(peer, "tx_bytes", 0)})
    return figures


def annotation_changes(annotations: Mapping[str, str] | None, *, peers: int, newest: int,
                       now: float) -> dict[str, str | None]:
    """The annotation values to write (None removes one) for an interface with ``peers`` peers
    whose newest handshake was at ``newest`` (0 = never); empty when the recorded ones stand.

    A recorded handshake time stands while it is no later than the live one and at most
    ``REKEY_AFTER`` old: the column it feeds is then off by less than one rekey."""
    annotations = annotations or {}
    changes: dict[str, str | None] = {}
    if annotations.get(PEERS_ANNOTATION) != str(peers):
        changes[PEERS_ANNOTATION] = str(peers)
    recorded = annotations.get(HANDSHAKE_ANNOTATION)
    wanted = stamp(newest) if newest else None
    if recorded != wanted:
        at = _epoch(recorded)
        stands = at is not None and newest and at <= newest and now - at <= REKEY_AFTER
        if not stands:
            changes[HANDSHAKE_ANNOTATION] = wanted
    return changes
