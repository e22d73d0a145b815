"""Action plugin: the federation plan of an inventory group, kept as the fact ``dtservice_plan``.

The plan is the lookup's (``plugin_utils/inventory_plan.py``), returned here as a fact
rather than through ``set_fact``: Ansible walks and tags every value a template returns, and
for the plan of 100 nodes that took as long as planning."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inventory_plan import (
    PLAN_FACT,
    InventoryPlanError,
    inventory_plan,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "group": {"type": "str", "default": "federation"},
    "limit": {"type": "list", "elements": "str"},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            computed = inventory_plan(variables=task_vars or {}, group=args["group"], limit=args["limit"])
        except InventoryPlanError as error:
            raise AnsibleActionFail(str(error)) from None
        # Censored for the callbacks, which copied and converted the whole plan (0.04 s at 100
        # nodes) and print it from -v on; the plan stays readable as the fact.
        result.update(changed=False, ansible_facts={PLAN_FACT: computed}, _ansible_no_log=True)
        return result
