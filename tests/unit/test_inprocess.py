"""The in-process action's module run: its arguments checked as plain values, the result of
exit_json or fail_json, with the worker's inherited heap frozen out of the garbage
collector's way."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import pytest
from ansible._internal._datatag._tags import Origin
from ansible.errors import AnsibleActionFail
from ansible.plugins.loader import filter_loader
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import wgconfig
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inprocess import (
    InProcessModule,
    preload_core,
    run_in_worker,
    validated_params,
)
from conftest import ansible_playbook

SPEC = {"nodes": {"type": "list", "elements": "dict", "required": True},
        "handshake_timeout": {"type": "float", "default": 45}}


class StandIn:
    """A module's code: remembers how much of the heap was frozen when it ran."""

    def __init__(self, finish):
        self.finish = finish
        self.frozen_when_run: int | None = None

    def run(self, module: InProcessModule) -> None:
        self.frozen_when_run = gc.get_freeze_count()
        self.finish(module)


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_module_runs_with_the_inherited_heap_frozen_and_its_exit_is_the_result():
    code = StandIn(lambda module: module.exit_json(changed=True, interfaces=["wg0"]))
    result = run_in_worker(code, InProcessModule(params={}, check_mode=False, diff=False))
    assert result == {"changed": True, "interfaces": ["wg0"]}
    # Everything that lived before the call (this test's modules, pytest's objects) is out
    # of the collector's reach while the module allocates.
    assert code.frozen_when_run and code.frozen_when_run > 1000


def test_a_failure_is_the_result_with_its_message_and_an_exit_without_changes_is_unchanged():
    result = run_in_worker(StandIn(lambda module: module.fail_json("refused", node="node1")),
                           InProcessModule(params={}, check_mode=True, diff=False))
    assert result == {"failed": True, "msg": "refused", "node": "node1"}
    result = run_in_worker(StandIn(lambda module: module.exit_json()),
                           InProcessModule(params={}, check_mode=True, diff=False))
    assert result == {"changed": False}


def test_arguments_are_checked_as_plain_values_with_the_specs_defaults():
    # As the templar hands them over: strings tagged with where they came from.
    tagged = Origin(path="/inventory.yml", line_num=3).tag("node0")
    params = validated_params(name="dtservice_node", argument_spec=SPEC, args={"nodes": [{"name": tagged}]})
    assert params == {"nodes": [{"name": "node0"}], "handshake_timeout": 45.0}
    assert params["nodes"][0]["name"].__class__ is str  # not a subclass: the tagged str is one


def test_an_unknown_or_missing_argument_fails_the_task_naming_the_module():
    with pytest.raises(AnsibleActionFail, match=r"Unsupported parameters for \(dtservice_node\) module: finalizer"):
        validated_params(name="dtservice_node", argument_spec=SPEC, args={"nodes": [], "finalizer": True})
    with pytest.raises(AnsibleActionFail, match="missing required arguments: nodes"):
        validated_params(name="dtservice_node", argument_spec=SPEC, args={})


def test_preloading_leaves_the_templates_compiled_the_filters_loaded_and_the_heap_frozen():
    wgconfig._environment.cache_clear()
    preload_core()
    # Jinja keeps each template it compiled; a worker forked now finds all three there.
    assert len(wgconfig._environment().cache) == 3
    assert filter_loader._cached_non_collection_wrappers
    assert gc.get_freeze_count() > 0


UNCHANGED = """
- name: Run an in-process module that changes nothing
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Apply no objects
      sightline.dtservice.dtservice_manifest:
        clusters: []
"""
FAILED = """
- name: Run the pass of a node whose kubeconfig does not exist
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the pass
      sightline.dtservice.dtservice_node:
        nodes: [{name: lost, namespace: tenant, address: 198.18.0.99, kubeconfig: /nonexistent/kubeconfig}]
        federation: []
        serves: {}
"""
# A callback beside the playbook (loaded without being enabled) that notes, per task, the
# keys of the result the callbacks get.
NOTING_CALLBACK = """
import json, os
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "note_keys"

    def _note(self, result):
        with open(os.environ["NOTED_KEYS"], "a") as noted:
            noted.write(json.dumps(sorted(result._result)) + "\\n")

    v2_runner_on_ok = v2_runner_on_failed = lambda self, result, *args, **kwargs: self._note(result)
"""


def keys_seen(tmp_path: Path, text: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """The playbook's return code and the keys of its one task's result, as callbacks get it."""
    (tmp_path / "play.yml").write_text(text)
    (tmp_path / "callback_plugins").mkdir(exist_ok=True)
    (tmp_path / "callback_plugins" / "note_keys.py").write_text(NOTING_CALLBACK)
    noted = tmp_path / "keys.jsonl"
    noted.unlink(missing_ok=True)
    result = ansible_playbook("-i", "localhost,", "-c", "local", *args, "-e",
                              f"ansible_python_interpreter={sys.executable}", tmp_path / "play.yml",
                              env={"NOTED_KEYS": str(noted), **(env or {})})
    (keys,) = [json.loads(line) for line in noted.read_text().splitlines()]
    return result.returncode, set(keys)


def test_a_result_carries_its_arguments_only_where_someone_reads_them(tmp_path):
    """A converged result leaves ``invocation`` out (at 100 nodes it was a third of what the
    results carried through the callbacks), and from -vvv on, where the stdout callback prints
    it, keeps it. A failed one keeps it too: the status callback takes the call's nodes from it
    and reports them failed to the daemon (its results file)."""
    returncode, quiet = keys_seen(tmp_path, UNCHANGED)
    assert returncode == 0 and "changed_objects" in quiet and "invocation" not in quiet
    returncode, verbose = keys_seen(tmp_path, UNCHANGED, "-vvv")
    assert returncode == 0 and "invocation" in verbose
    results = tmp_path / "results.json"
    returncode, failed = keys_seen(tmp_path, FAILED, env={"DTSERVICE_RESULTS_FILE": str(results)})
    assert returncode != 0 and {"node_errors", "invocation"} <= failed
    reported = json.loads(results.read_text())
    assert reported["lost"]["failed"] is True, reported
    assert "cannot read kubeconfig /nonexistent/kubeconfig" in reported["lost"]["errors"][0]
