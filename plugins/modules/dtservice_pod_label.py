#!/usr/bin/python
"""Ansible module: set the sid.sightline.dtservice.<id> labels on the nodes' pods."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_pod_label
short_description: Label the nodes' pods with their dtService roles
description:
  - "Merges C(sid.sightline.dtservice.<id>) labels (value C(server) or C(client)) into pods,
    one patch per pod whose labels differ, and removes C(sid.sightline.dtservice.*) labels of
    dtServices that no longer attach the pod. Supports check mode (server-side dry run) and
    diff mode."
options:
  nodes:
    description: The nodes whose pods are labelled.
    type: list
    elements: dict
    required: true
  labels:
    description: Node name -> pod name -> the dtService labels it should carry (from dtservice_reconcile).
    type: dict
    required: true
author: dtService project
"""

EXAMPLES = r"""
- name: Label the pods of node0
  dtservice_pod_label:
    nodes: ["{{ dtservice_plan.nodes.node0 }}"]
    labels: {node0: {my-pod: {sid.sightline.dtservice.74dbd2ec528e4db3a496a893f85cd0d2: server}}}
"""

RETURN = r"""
pods:
  description: Node name -> pod name -> labels written (a null value removes that label).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dtservice.module_args import NODE_OPTIONS, run_on_nodes
from ansible.module_utils.dtservice.plan import label_changes

ARGUMENT_SPEC = {
    "nodes": {"type": "list", "elements": "dict", "required": True, "options": NODE_OPTIONS},
    "labels": {"type": "dict", "required": True},
}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""

    def label(*, cluster, node):
        changes = label_changes(pods=cluster.list_pods(node), wanted=module.params["labels"].get(node.name) or {})
        for pod, labels in changes.items():
            cluster.patch_pod_labels(node, pod, labels)
        return changes

    changes = {name: done for name, done in run_on_nodes(module, label).items() if done}
    result = {"changed": bool(changes), "pods": changes}
    if module._diff and changes:
        result["diff"] = {"before": {}, "after": changes}
    module.exit_json(**result)


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
