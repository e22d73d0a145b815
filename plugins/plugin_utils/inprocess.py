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

import importlib.util
import sys
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

PLUGINS = Path(__file__).resolve().parents[1]


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


def register_core() -> None:
    """Make the core importable in the controller as ``ansible.module_utils.dtservice``, the
    name modules import it by on targets, so that every plugin shares one copy of it."""
    name = "ansible.module_utils.dtservice"
    if name in sys.modules:
        return
    import ansible.module_utils

    package = PLUGINS / "module_utils" / "dtservice"
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    ansible.module_utils.dtservice = module


def preload_core() -> None:
    """Import the whole core (and what it needs) into this process."""
    register_core()
    for part in ("agent", "manifest", "module_args", "node", "reconcile", "teardown"):
        importlib.import_module(f"ansible.module_utils.dtservice.{part}")


def _module_code(name: str):
    register_core()
    spec = importlib.util.spec_from_file_location(f"_dtservice_inprocess_{name}", PLUGINS / "modules" / f"{name}.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    return code


class InProcessAction(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        name = self._task.action.rsplit(".", 1)[-1]
        # With become, the work must run as the other user: that takes a module run.
        if self._connection.transport != "local" or self._play_context.become:
            result.update(self._execute_module(module_name=name, module_args=self._task.args, task_vars=task_vars))
            return result
        code = _module_code(name)
        _, params = self.validate_argument_spec(argument_spec=code.ARGUMENT_SPEC)
        module = InProcessModule(params=params, check_mode=bool(self._task.check_mode), diff=bool(self._task.diff))
        try:
            code.run(module)
        except ModuleFinished as finished:
            result.update(finished.result)
        result["invocation"] = {"module_args": params}
        return result
