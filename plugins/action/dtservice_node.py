"""Action plugin: dtservice_node in the controller's process when the task runs there, and its
``plan_machine`` made into the machine's ``nodes``, ``federation`` and ``serves`` from the plan
the controller keeps (the dtservice_plan action's fact), read as it was stored: templated
into the task's arguments, the plan's values were walked and tagged again, a tenth of a
second at 100 nodes."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inprocess import InProcessAction
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inventory_plan import InventoryPlanError, kept_plan


class ActionModule(InProcessAction):
    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        args = dict(self._task.args)
        agent = args.pop("plan_machine", None)
        if agent is None:
            return args
        given = sorted(set(args) & {"nodes", "federation", "serves"})
        if given:
            raise AnsibleActionFail(f"plan_machine takes nodes, federation and serves from the plan: "
                                    f"{', '.join(given)} cannot be given with it")
        try:
            computed = kept_plan(task_vars)
            args.update(plan.machine_arguments(computed, agent=str(agent)))
        except InventoryPlanError as error:
            raise AnsibleActionFail(str(error)) from None
        except KeyError:
            raise AnsibleActionFail(f"plan_machine: {agent} runs no machine's pass in the plan (its agents: "
                                    f"{', '.join(sorted(computed['agents']))})") from None
        return args
