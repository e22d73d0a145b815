"""Argument specs the provisioner's modules share, and running a module's work on many nodes.

Owns the shape of a federation node as a module sees it (the inventory host's
``dtservice_node_*`` variables, gathered by the ``dtservice_plan`` lookup) and the batching:
a module call takes every node it should work on, so a federation of a hundred nodes costs a
few module runs, not a hundred per step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
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
    "nodes": {"type": "list", "elements": "dict", "required": True, "options": NODE_OPTIONS},
    "federation": {"type": "list", "elements": "dict", "required": True, "options": NODE_OPTIONS},
}

# API calls and handshake waits dominate, not CPU: nodes are worked on side by side.
PARALLEL_NODES = 16


def node_ref(params: Mapping[str, Any]):
    from .cluster import NodeRef

    return NodeRef(name=params["name"], namespace=params["namespace"], address=params["address"],
                   kubeconfig=params.get("kubeconfig"), context=params.get("context"),
                   port_range=params.get("port_range") or "51820-51919", netns=params.get("netns"))


def federation_refs(params: Mapping[str, Any]) -> dict:
    refs = {node["name"]: node_ref(node) for node in params["federation"]}
    for node in params["nodes"]:
        refs.setdefault(node["name"], node_ref(node))
    return refs


def for_each_node(params: Mapping[str, Any], work: Callable[[Any], Any]) -> dict[str, Any]:
    """``work(node_ref)`` for every node of the call, side by side; node name -> result."""
    nodes = [node_ref(node) for node in params["nodes"]]
    with ThreadPoolExecutor(max_workers=min(PARALLEL_NODES, max(1, len(nodes)))) as pool:
        return dict(zip([n.name for n in nodes], pool.map(work, nodes), strict=True))
