"""The core's layers, as docs/architecture.md draws them, checked on every import.

contract < rules < kube < control | data < machine < module_args < plugins: a module imports
only from its own layer or a lower one, control and data never import each other, and the
pure layers (contract, rules) import nothing that reaches outside the process.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "plugins" / "module_utils"
PACKAGE = "ansible_collections.sightline.dtservice.plugins."
LAYERS = {"contract": 0, "rules": 1, "kube": 2, "control": 3, "data": 3, "machine": 4, "module_args": 5}
PLUGINS = 6
SIBLINGS = {frozenset({"control", "data"})}
# What a pure module must not touch: processes, files, sockets, clocks and threads.
IMPURE = {"subprocess", "socket", "os", "ssl", "urllib3", "threading", "shutil", "tempfile", "fcntl", "signal",
          "time", "pathlib", "yaml"}


def layer_of(dotted: str) -> tuple[str, int]:
    """Layer name and rank of a module given by its path below ``plugins.``."""
    parts = dotted.split(".")
    if parts[0] != "module_utils":
        return parts[0], PLUGINS
    name = parts[1]
    return name, LAYERS[name]


def python_files() -> list[Path]:
    return sorted(p for p in (ROOT / "plugins").rglob("*.py") if p.name != "__init__.py")


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def own(path: Path) -> str:
    return ".".join(path.relative_to(ROOT / "plugins").with_suffix("").parts)


def test_every_core_module_belongs_to_a_known_layer():
    for path in CORE.rglob("*.py"):
        top = path.relative_to(CORE).parts[0].removesuffix(".py")
        assert top in LAYERS, f"{path.relative_to(ROOT)} is in no layer: add it to docs/architecture.md and here"


def violations(source: str, targets: list[str]) -> list[str]:
    """What is wrong with ``source`` (a module path below ``plugins.``) importing ``targets``."""
    source_name, source_rank = layer_of(source)
    found = []
    for target in targets:
        if target == PACKAGE + "module_utils":  # `from ...module_utils import contract`: its names follow
            continue
        if not target.startswith(PACKAGE + "module_utils."):
            if target.startswith(PACKAGE) and source_rank < PLUGINS:
                found.append(f"{source} (core) imports the plugin {target}")
            continue
        target_name, target_rank = layer_of(target.removeprefix(PACKAGE))
        if target_name == source_name:
            continue
        if frozenset({source_name, target_name}) in SIBLINGS:
            found.append(f"{source} imports its sibling {target}")
        elif target_rank > source_rank:
            found.append(f"{source} (layer {source_name}) imports {target} from above")
    return found


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT / "plugins")))
def test_imports_point_down_the_layers(path):
    assert violations(own(path), imports(path)) == []


@pytest.mark.parametrize("path", sorted([CORE / "contract.py", *(CORE / "rules").glob("*.py")]),
                         ids=lambda p: str(p.relative_to(CORE)))
def test_pure_layers_reach_nothing_outside_the_process(path):
    reached = {name.split(".")[0] for name in imports(path)} & IMPURE
    assert not reached, f"{path.relative_to(ROOT)} is in a pure layer but imports {sorted(reached)}"


def test_the_checker_sees_each_kind_of_wrong_import():
    """The rules above are not vacuous."""
    assert violations("module_utils.rules.plan", [PACKAGE + "module_utils.kube.cluster.Cluster"])
    assert violations("module_utils.control.reconcile", [PACKAGE + "module_utils.data.podnet"])
    assert violations("module_utils.kube.cluster", [PACKAGE + "plugin_utils.inprocess"])
    assert not violations("module_utils.machine.agent", [PACKAGE + "module_utils.control.reconcile",
                                                         PACKAGE + "module_utils.contract"])
