"""A module run on a machine without one of the core's third-party libraries fails cleanly,
naming the library, instead of with a traceback (the core's modules import without them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = {"name": "node0", "namespace": "dtaas-node0-dtaas", "address": "10.4.0.16"}
NODE_ARGS = {"nodes": [NODE], "federation": [NODE]}
CASES = [
    ("dtservice_node", NODE_ARGS, "yaml"),
    ("dtservice_node", NODE_ARGS, "urllib3"),
    ("dtservice_node", NODE_ARGS, "jinja2"),
    ("dtservice_reconcile", NODE_ARGS, "cryptography"),
    ("dtservice_teardown", NODE_ARGS, "urllib3"),
    ("dtservice_manifest", {"clusters": [{"objects": []}]}, "urllib3"),
]
# Runs the module as AnsiballZ would, with the library made unimportable (None in sys.modules).
RUNNER = """
import runpy, sys
sys.modules[sys.argv[1]] = None
sys.argv = [sys.argv[2], sys.argv[3]]
runpy.run_module("ansible_collections.sightline.dtservice.plugins.modules." + sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(("module", "args", "library"), CASES, ids=[f"{m}-{lib}" for m, _args, lib in CASES])
def test_missing_library_fails_the_module_by_name(tmp_path, module, args, library):
    arguments = tmp_path / "args.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, "-c", RUNNER, library, module, str(arguments)], capture_output=True,
                          text=True, check=False, cwd=ROOT, env={"PYTHONPATH": str(ROOT / ".collections")})
    result = json.loads(done.stdout)
    assert result["failed"] is True
    assert f"required Python library ({library})" in result["msg"]
    assert "Traceback" not in done.stderr
