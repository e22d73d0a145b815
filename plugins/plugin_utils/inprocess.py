"""The action plugin behind every dtservice_* module: where the task runs on the controller
itself, the module's ``run`` is called inside Ansible's worker process.

Owns only that choice. A module run costs a new Python, AnsiballZ's unpacking and the
imports, about half a second on a small machine, while the API steps of a converged
federation take milliseconds; the steps that talk only to API servers (and, on the local
federation, the agent) run where the controller is. Over any other connection, or with
become, the module runs on the target as usual. Either way the same ``run(module)`` does the
work, with the module's own ARGUMENT_SPEC validated first, and check and diff mode passed
through.
"""

from __future__ import annotations

import gc
import importlib
import json
from typing import Any

from ansible.plugins.action import ActionBase


class ModuleFinished(Exception):
    """exit_json or fail_json of the stand-in: the module's result."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result


class InProcessModule:
    """What a dtservice module uses of AnsibleModule, for a call inside the controller."""

    def __init__(self, *, params: dict[str, Any], check_mode: bool, diff: bool) -> None:
        self.params = params
        self.check_mode = check_mode
        self._diff = diff

    def exit_json(self, **result: Any) -> None:
        result.setdefault("changed", False)
        raise ModuleFinished(result)

    def fail_json(self, msg: str, **result: Any) -> None:
        raise ModuleFinished({**result, "failed": True, "msg": msg})


COLLECTION = "ansible_collections.sightline.dtservice.plugins"


MODULES = ("dtservice_daemon_process", "dtservice_manifest", "dtservice_node", "dtservice_reconcile",
           "dtservice_teardown")


def preload_core() -> None:
    """Import every module of the collection, and with them the whole core, into this process."""
    for name in MODULES:
        _module_code(name)


def _module_code(name: str):
    return importlib.import_module(f"{COLLECTION}.modules.{name}")


def run_in_worker(code: Any, module: InProcessModule) -> dict[str, Any]:
    """``code.run(module)`` in this worker process; the module's result."""
    # The worker is a fork of the controller, with the controller's heap (inventory,
    # templates, the whole core), and ends with the task: none of that is garbage here.
    # Frozen, it is not traversed by every full collection the module's allocations start
    # (0.35 s of the pass over 100 nodes went to collecting, 0.1 s so).
    gc.freeze()
    try:
        code.run(module)
    except ModuleFinished as finished:
        return finished.result
    return {}


class InProcessAction(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        # The module's fully qualified name: a module run on the target finds it by that.
        action = self._task.resolved_action or self._task.action
        name = action.rsplit(".", 1)[-1]
        # With become, the work must run as the other user: that takes a module run.
        if self._connection.transport != "local" or self._play_context.become:
            result.update(self._execute_module(module_name=action, module_args=self._task.args, task_vars=task_vars))
            return result
        code = _module_code(name)
        _validation, validated = self.validate_argument_spec(argument_spec=code.ARGUMENT_SPEC)
        # As JSON, as a module run on the target gets them: plain values, not the templar's
        # tagged ones, which cost the core's every copy of a plan a hundred times more.
        params = json.loads(json.dumps(validated))
        module = InProcessModule(params=params, check_mode=bool(self._task.check_mode), diff=bool(self._task.diff))
        result.update(run_in_worker(code, module))
        result["invocation"] = {"module_args": params}
        return result
