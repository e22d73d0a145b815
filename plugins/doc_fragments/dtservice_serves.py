"""Documentation of the option the modules that reconcile a pass share (dtservice_reconcile,
dtservice_node): ``serves``, the networks each node is the inventory's planned hub of."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  serves:
    description:
      - Node name -> the dtServices (by name) whose networks that node is the planned hub of
        (C(dtservice_plan.serves)). They are reconciled on every node of the call before any
        other dtService, so the hub the inventory names registers its network first.
    type: dict
    default: {}
"""
