"""A dtService's key Secret (``dtservice-<name>-wg``): its WireGuard key pair.

Owns making the Secret (the private key in its data, the public key in an annotation, the
dtService as its owner), replacing one that is unreadable or left by an earlier object of
the same name, and reading the private key back for the node agent. The private key leaves
this module only to the agent, which hands it to ``wg`` through a 0600 file: it is never
logged, never in an error message, an outcome or a module's result.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Conflict, NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import keys


def ensure_key_secret(*, cluster: Cluster, node: NodeRef, service: Mapping[str, Any],
                      secret: Mapping[str, Any] | None) -> str:
    """Return the public key of the dtService's key Secret, making the Secret when it is
    missing, unreadable or owned by an earlier object of the same name."""
    meta = service["metadata"]
    if secret is not None:
        try:
            private: str | None = _private_key_of(secret)
        except ValueError:
            private = None
        if private is not None and meta["uid"] in _owners(secret):
            return keys.public_key_of(private)
        cluster.delete_secret(node, secret["metadata"]["name"])
    private = keys.generate_private_key()
    public = keys.public_key_of(private)
    body = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": contract.key_secret_name(meta["name"]), "namespace": node.namespace,
            "labels": {**contract.MANAGED_BY, contract.KEY_SECRET_LABEL: meta["name"]},
            "annotations": {contract.PUBLIC_KEY_ANNOTATION: public},
            "ownerReferences": [{"apiVersion": contract.API_VERSION, "kind": contract.SERVICE_KIND,
                                 "name": meta["name"], "uid": meta["uid"]}],
        },
        "data": {contract.PRIVATE_KEY_FIELD: base64.b64encode(private.encode()).decode()},
    }
    try:
        cluster.create_secret(node, body)
    except Conflict:
        # Another provisioner (the daemon beside a deploy) made it a moment ago: keep theirs.
        theirs = cluster.list_secrets(node, label_selector=f"{contract.KEY_SECRET_LABEL}={meta['name']}").get(
            contract.key_secret_name(meta["name"]))
        if theirs is None or meta["uid"] not in _owners(theirs):
            raise
        return ensure_key_secret(cluster=cluster, node=node, service=service, secret=theirs)
    return public


def read_private_key(secret: Mapping[str, Any] | None) -> str:
    """The private key in a key Secret, for the node agent's ``wg``; raises ValueError when
    there is no Secret yet."""
    if secret is None:
        raise ValueError("the key Secret is missing; the reconciler makes it on its next pass")
    return _private_key_of(secret)


def _private_key_of(secret: Mapping[str, Any]) -> str:
    """The key, checked to be one: a tenant can write its own namespace's Secrets, and the
    error of a failed decoding would quote the bytes it met."""
    try:
        key = base64.b64decode((secret.get("data") or {}).get(contract.PRIVATE_KEY_FIELD, ""), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("the key Secret's private key is not base64 of text") from None
    if not keys.is_valid_key(key):
        raise ValueError("the key Secret does not hold a WireGuard private key")
    return key


def _owners(secret: Mapping[str, Any]) -> list[str | None]:
    return [ref.get("uid") for ref in secret["metadata"].get("ownerReferences") or []]
