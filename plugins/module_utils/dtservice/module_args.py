"""Argument specs the provisioner's modules share, and turning them into ``NodeRef``s.

Owns the shape of a federation node as a module sees it (the inventory host's
``dtservice_node_*`` variables, gathered by the ``dtservice_plan`` lookup)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NODE_OPTIONS = {
    "name": {"type": "str", "required": True},
    "namespace": {"type": "str", "required": True},
    "address": {"type": "str", "required": True},
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "port_range": {"type": "str", "default": "51820-51919"},
    "netns": {"type": "str"},
}

NODE_ARGS = {
    "node": {"type": "dict", "required": True, "options": NODE_OPTIONS},
    "federation": {"type": "list", "elements": "dict", "required": True, "options": NODE_OPTIONS},
}


def node_ref(params: Mapping[str, Any]):
    from .cluster import NodeRef

    return NodeRef(name=params["name"], namespace=params["namespace"], address=params["address"],
                   kubeconfig=params.get("kubeconfig"), context=params.get("context"),
                   port_range=params.get("port_range") or "51820-51919", netns=params.get("netns"))


def federation_refs(params: Mapping[str, Any]) -> dict:
    refs = {node["name"]: node_ref(node) for node in params["federation"]}
    refs.setdefault(params["node"]["name"], node_ref(params["node"]))
    return refs
