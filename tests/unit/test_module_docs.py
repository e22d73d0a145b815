"""Every module's and plugin's documentation is YAML that ansible-doc can read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = sorted([*ROOT.glob("plugins/modules/*.py"), *ROOT.glob("plugins/lookup/*.py"),
                     *ROOT.glob("plugins/callback/*.py"), *ROOT.glob("plugins/filter/*.py")])


def doc_strings(path: Path) -> dict[str, str]:
    strings = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                    strings[target.id] = node.value.value
    return strings


@pytest.mark.parametrize("path", DOCUMENTED, ids=lambda p: p.name)
def test_documentation_examples_and_return_are_yaml(path):
    strings = doc_strings(path)
    if path.parent.name == "modules":
        assert set(strings) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, path.name
    for name, text in strings.items():
        assert yaml.safe_load(text) is not None, f"{path.name}: {name} is empty"
    if "DOCUMENTATION" in strings:
        assert yaml.safe_load(strings["DOCUMENTATION"]).get("short_description"), path.name
