"""Argument specs the provisioner's modules share, and running a module's work on many nodes.

Owns the options every module shares (``nodes`` and ``federation``, each a list of the
contract's node shape, as the ``dtservice_plan`` lookup gathers them) and the batching:
a module call takes every node it should work on, so a federation of a hundred nodes costs a
few module runs, not a hundred per step. ``run_on_nodes`` is every module's frame around its
work: one connection per API server, a Cluster per node, check mode as server dry runs, and
a clean failure (never a traceback) for a missing library, a bad kubeconfig or a refusal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

# Standard library only, like this module: safe to import before a module checks its libraries.
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NODE_OPTIONS, NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.side_by_side import side_by_side

NODE_ARGS = {
    "nodes": {"type": "list", "elements": "dict", "required": True, "options": NODE_OPTIONS},
    "federation": {"type": "list", "elements": "dict", "required": True, "options": NODE_OPTIONS},
}

# Node name -> the dtServices whose networks it is the planned hub of (dtservice_plan.serves).
SERVES_ARGS = {"serves": {"type": "dict", "default": {}}}
# no_log False: the name says "key", the value is an age.
KEY_AGE_ARGS = {"key_max_age": {"type": "float", "default": 0, "no_log": False}}

CORE = "ansible_collections.sightline.dtservice.plugins.module_utils."

# API calls and handshake waits dominate, not CPU: nodes are worked on side by side.
PARALLEL_NODES = 16


def federation_refs(params: Mapping[str, Any]) -> dict:
    refs = {node["name"]: NodeRef.from_params(node) for node in params["federation"]}
    for node in params["nodes"]:
        refs.setdefault(node["name"], NodeRef.from_params(node))
    return refs


def require(module, import_error: ImportError | None) -> None:
    """Fail the module, naming the library, when importing the core failed or a core module it
    loaded lacks a third-party library (kept as that module's ``IMPORT_ERROR``, so the module
    can be imported without it, as the import sanity test does)."""
    if import_error is None:
        import_error = next((missing for name, loaded in list(sys.modules.items())
                             if name.startswith(CORE) and (missing := getattr(loaded, "IMPORT_ERROR", None))), None)
    if import_error is not None:
        from ansible.module_utils.basic import missing_required_lib

        # The distribution to install: cryptography, not cryptography.hazmat.
        library = import_error.name.partition(".")[0] if import_error.name else str(import_error)
        module.fail_json(msg=missing_required_lib(library), exception=str(import_error))


@contextmanager
def api_failures(module, *, refused: str) -> Iterator[None]:
    """Turn an unusable kubeconfig or an API server's refusal of ``refused`` (what the module
    sent) into a clean module failure."""
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiError, KubeconfigError

    try:
        yield
    except KubeconfigError as error:
        module.fail_json(msg=str(error))
    except ApiError as error:
        module.fail_json(msg=f"an API server refused {refused}: {error}", status=error.status)


def nodes_runner(module, *, import_error: ImportError | None = None) -> Callable[[Callable[..., Any]], dict[str, Any]]:
    """``run_on_nodes`` for a module call of several phases: every phase's work runs with the
    same connections, so the call's listings (each collection read once) serve all of them."""
    require(module, import_error)
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.cluster import Cluster, Connections

    connections = Connections()
    # Made once for every phase: a pass over 100 nodes made them again in each of its five.
    nodes = [NodeRef.from_params(node) for node in module.params["nodes"]]

    def run(work: Callable[..., Any], *, at_most: int = PARALLEL_NODES,
            only: Collection[str] | None = None) -> dict[str, Any]:
        """``work`` for every node of the call (``only``: those named), at most ``at_most`` side by side."""
        with api_failures(module, refused="a request"):
            return for_each_node([node for node in nodes if only is None or node.name in only], lambda node: work(
                cluster=Cluster(connections=connections, dry_run=module.check_mode), node=node), at_most=at_most)
    return run


def run_on_nodes(module, work: Callable[..., Any], *, import_error: ImportError | None = None) -> dict[str, Any]:
    """``work(cluster=..., node=...)`` for every node of the module's call; node name -> result."""
    return nodes_runner(module, import_error=import_error)(work)


def for_each_node(nodes: Sequence[NodeRef], work: Callable[[NodeRef], Any], *,
                  at_most: int = PARALLEL_NODES) -> dict[str, Any]:
    """``work(node)`` for every node of the call, at most ``at_most`` side by side; node name -> result."""
    return dict(zip([n.name for n in nodes], side_by_side(nodes, work, at_most=at_most), strict=True))
