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

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import filter_loader, test_loader
from ansible.utils.display import Display
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import wgconfig


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

# The module's arguments go back with its result (``invocation``, as a module run on the
# target returns them) where someone reads them: the stdout callback shows them from -vvv on,
# and the dtservice_status callback takes the nodes of a call that changed or failed from
# them. A converged run's results leave them out: the pass's nodes and the declared objects
# were a third of the data its results carried through the callbacks, 0.07 s of CPU at 100
# nodes.
SHOWN_AT_VERBOSITY = 3


MODULES = ("dtservice_daemon_process", "dtservice_manifest", "dtservice_node", "dtservice_reconcile",
           "dtservice_teardown")


def preload_core() -> None:
    """Import every module of the collection, and with them the whole core, into this process;
    compile the WireGuard templates, load Ansible's Jinja filters and tests, and freeze the
    garbage collector's view of all that is there.

    Ansible forks a worker for each task, which starts with this process's heap: done here,
    none of it is done again per task. (Ansible loads all of its filters, or tests, at the
    first use of one in a process: 10 ms of every task whose arguments or condition use a
    filter; compiling the templates took 20 ms of each pass.) Frozen, the objects loaded so
    far (Ansible, the inventory, the core) are not traversed again by this process's
    collections, nor by its workers' or its exit's: 0.1 s of every run, empty ones too."""
    for name in MODULES:
        _module_code(name)
    wgconfig.compile_templates()
    filter_loader.get("ansible.builtin.bool")
    test_loader.get("ansible.builtin.truthy")
    gc.freeze()


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


def validated_params(*, name: str, argument_spec: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """The task's arguments checked against the module's spec, with its defaults, as plain values.

    As JSON before the check, as a module run on the target gets them: the templar's values
    carry tags (where each string came from), and the check deep-copies what it is given,
    which for tagged values (the CRDs' schemas, a plan) cost more than the module's whole
    work (ActionBase.validate_argument_spec checks the tagged ones)."""
    validation = ArgumentSpecValidator(argument_spec).validate(json.loads(json.dumps(args)))
    errors = validation.errors.errors
    if errors:
        message = validation.errors.msg
        if isinstance(errors[0], UnsupportedError):
            message = f"Unsupported parameters for ({name}) module: {message}"
        raise AnsibleActionFail(message)
    return validation.validated_parameters


class InProcessAction(ActionBase):
    TRANSFERS_FILES = False

    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        """The module's arguments from the task's: the same unless an action prepares some on
        the controller."""
        return self._task.args

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        # The module's fully qualified name: a module run on the target finds it by that.
        action = self._task.resolved_action or self._task.action
        name = action.rsplit(".", 1)[-1]
        args = self.module_args(task_vars or {})
        # With become, the work must run as the other user: that takes a module run.
        if self._connection.transport != "local" or self._play_context.become:
            result.update(self._execute_module(module_name=action, module_args=args, task_vars=task_vars))
            return result
        code = _module_code(name)
        params = validated_params(name=name, argument_spec=code.ARGUMENT_SPEC, args=args)
        module = InProcessModule(params=params, check_mode=bool(self._task.check_mode), diff=bool(self._task.diff))
        result.update(run_in_worker(code, module))
        if result.get("changed") or result.get("failed") or Display().verbosity >= SHOWN_AT_VERBOSITY:
            result["invocation"] = {"module_args": params}
        return result
