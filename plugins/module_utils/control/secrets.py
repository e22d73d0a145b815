"""A dtService's key Secret (``<namespace>.<name>`` in ``contract.KEYS_NAMESPACE``): its
WireGuard key pair.

Owns making the Secret (the private key in its data; the public key, the key's creation time
and the owning dtService's uid in annotations), replacing one that is unreadable or left by
an earlier object of the same name, moving the key an earlier release kept in the dtService's
own namespace (``dtservice-<name>-wg``) into it, and reading the private key back for the
node agent.
Also the Secret's part of a key rotation: staging the next private key beside the current
one (with the reason), and committing it, which leaves the Secret holding only the new key.
A private key leaves this module only to the agent, which hands it to ``wg`` through a 0600
file: it is never logged, never in an error message, an outcome or a module's result.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
from collections.abc import Mapping
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Conflict, NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import keys, rotation


def ensure_key_secret(*, cluster: Cluster, node: NodeRef, service: Mapping[str, Any],
                      secret: Mapping[str, Any] | None) -> str:
    """Return the public key of the dtService's key Secret (``secret``, as listed), making the
    Secret when it is missing, unreadable or owned by an earlier object of the same name. A key
    an earlier release kept in the dtService's namespace is moved, not made anew: the tunnels
    of an upgraded federation keep their keys."""
    meta = service["metadata"]
    if secret is None:
        secret = _moved_here(cluster=cluster, node=node, service=service)
    if secret is not None:
        try:
            private: str | None = _private_key_of(secret)
        except ValueError:
            private = None
        if private is not None and usable(secret, uid=meta["uid"]):
            return keys.public_key_of(private)
        cluster.delete_secret(node, meta["name"])
    private = keys.generate_private_key()
    public = keys.public_key_of(private)
    body = _key_secret(node=node, service=service, data={contract.PRIVATE_KEY_FIELD: _encoded(private)},
                       annotations={contract.PUBLIC_KEY_ANNOTATION: public, contract.KEY_CREATED_ANNOTATION: _now()})
    try:
        cluster.create_secret(node, body)
    except Conflict:
        return _theirs(cluster=cluster, node=node, service=service)
    return public


def _theirs(*, cluster: Cluster, node: NodeRef, service: Mapping[str, Any]) -> str:
    """The public key of the key Secret another provisioner (the daemon beside a deploy) made a
    moment ago, kept; the Conflict when it is not this dtService's."""
    theirs = cluster.get_key_secret(node, service["metadata"]["name"])
    if theirs is None or service["metadata"]["uid"] not in _owners(theirs):
        raise Conflict(f"the key Secret of dtService {service['metadata']['name']} was made by another writer")
    return ensure_key_secret(cluster=cluster, node=node, service=service, secret=theirs)


def _key_secret(*, node: NodeRef, service: Mapping[str, Any], data: Mapping[str, str],
                annotations: Mapping[str, str]) -> dict[str, Any]:
    meta = service["metadata"]
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": contract.key_secret_name(node.namespace, meta["name"]), "namespace": contract.KEYS_NAMESPACE,
            "labels": {**contract.MANAGED_BY, contract.KEY_SECRET_LABEL: meta["name"],
                       contract.KEY_NAMESPACE_LABEL: node.namespace},
            "annotations": {**annotations, contract.OWNER_UID_ANNOTATION: meta["uid"]},
        },
        "data": dict(data),
    }


def _moved_here(*, cluster: Cluster, node: NodeRef, service: Mapping[str, Any]) -> dict | None:
    """The key Secret made from the one an earlier release kept in the dtService's namespace,
    which is then deleted; None when there is none this dtService owns (labelled, a
    WireGuard key, the dtService's uid among its owners), which is then left alone. The key's
    creation time and a rotation's staged next key come along."""
    name = service["metadata"]["name"]
    old = cluster.legacy_key_secret(node, name)
    if old is None or (old["metadata"].get("labels") or {}).get(contract.KEY_SECRET_LABEL) != name \
            or not usable(old, uid=service["metadata"]["uid"]):
        return None
    fields = (contract.PRIVATE_KEY_FIELD, contract.NEXT_PRIVATE_KEY_FIELD)
    notes = (contract.PUBLIC_KEY_ANNOTATION, contract.KEY_CREATED_ANNOTATION, contract.NEXT_KEY_REASON_ANNOTATION)
    old_annotations = old["metadata"].get("annotations") or {}
    body = _key_secret(node=node, service=service,
                       data={k: v for k, v in (old.get("data") or {}).items() if k in fields},
                       annotations={k: v for k, v in old_annotations.items() if k in notes})
    try:
        moved: dict | None = cluster.create_secret(node, body)
    except Conflict:  # another provisioner moved it a moment ago
        moved = cluster.get_key_secret(node, name)
    cluster.delete_legacy_key_secret(node, name)
    return moved


def usable(secret: Mapping[str, Any], *, uid: str) -> bool:
    """Whether a key Secret is the one ``ensure_key_secret`` keeps for the dtService of ``uid``."""
    try:
        _private_key_of(secret)
    except ValueError:
        return False
    return uid in _owners(secret)


def read_private_key(secret: Mapping[str, Any] | None) -> str:
    """The private key in a key Secret, for the node agent's ``wg``; raises ValueError when
    there is no Secret yet."""
    if secret is None:
        raise ValueError("the key Secret is missing; the reconciler makes it on its next pass")
    return _private_key_of(secret)


def next_private_key(secret: Mapping[str, Any] | None) -> str | None:
    """The staged next private key of a rotation under way; None when there is none (or what
    is there is no key: a tenant may write its own Secrets, and garbage is not put to use)."""
    if secret is None or contract.NEXT_PRIVATE_KEY_FIELD not in (secret.get("data") or {}):
        return None
    try:
        return _private_key_of(secret, field=contract.NEXT_PRIVATE_KEY_FIELD)
    except ValueError:
        return None


def next_key_reason(secret: Mapping[str, Any]) -> str | None:
    return ((secret.get("metadata") or {}).get("annotations") or {}).get(contract.NEXT_KEY_REASON_ANNOTATION)


def stage_next_key(*, cluster: Cluster, node: NodeRef, secret: Mapping[str, Any], reason: str) -> None:
    """Put a new private key beside the current one, with why; the current key stays the one
    published and in use until the agent commits the new one (``commit_next_key``). A
    Conflict (the Secret moved on) is raised: the next pass stages again if still due."""
    body = copy.deepcopy(dict(secret))
    body.setdefault("data", {})[contract.NEXT_PRIVATE_KEY_FIELD] = _encoded(keys.generate_private_key())
    body["metadata"].setdefault("annotations", {})[contract.NEXT_KEY_REASON_ANNOTATION] = reason
    cluster.replace_secret(node, body)


def commit_next_key(*, cluster: Cluster, node: NodeRef, secret: Mapping[str, Any]) -> None:
    """Make the staged next key the current one, in one write: afterwards the Secret holds
    only the new private key, its public key and its creation time."""
    following = next_private_key(secret)
    if following is None:
        raise ValueError("the key Secret holds no next key to commit")
    body = copy.deepcopy(dict(secret))
    body["data"] = {contract.PRIVATE_KEY_FIELD: _encoded(following)}
    annotations = body["metadata"].setdefault("annotations", {})
    annotations.pop(contract.NEXT_KEY_REASON_ANNOTATION, None)
    annotations.update({contract.PUBLIC_KEY_ANNOTATION: keys.public_key_of(following),
                        contract.KEY_CREATED_ANNOTATION: _now()})
    cluster.replace_secret(node, body)


def _encoded(private: str) -> str:
    return base64.b64encode(private.encode()).decode()


def _now() -> str:
    return rotation.format_time(datetime.datetime.now(datetime.UTC))


def _private_key_of(secret: Mapping[str, Any], *, field: str = contract.PRIVATE_KEY_FIELD) -> str:
    """The key, checked to be one: a tenant can write its own namespace's Secrets, and the
    error of a failed decoding would quote the bytes it met."""
    try:
        key = base64.b64decode((secret.get("data") or {}).get(field, ""), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("the key Secret's private key is not base64 of text") from None
    if not keys.is_valid_key(key):
        raise ValueError("the key Secret does not hold a WireGuard private key")
    return key


def _owners(secret: Mapping[str, Any]) -> list[str | None]:
    """The uids of the dtServices a key Secret is for: its annotation's, or an earlier
    release's owner references."""
    annotated = (secret["metadata"].get("annotations") or {}).get(contract.OWNER_UID_ANNOTATION)
    return [annotated, *(ref.get("uid") for ref in secret["metadata"].get("ownerReferences") or [])]
