#!/usr/bin/python
"""Ansible module: set the sid.sightline.dtservice.<id> labels on a node's pods."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_pod_label
short_description: Label pods with their dtService role
description:
  - "Merges C(sid.sightline.dtservice.<id>) labels (value C(server) or C(client)) into pods,
    one patch per pod whose labels differ, and removes C(sid.sightline.dtservice.*) labels of
    dtServices that no longer attach the pod. Supports check mode (server-side dry run) and
    diff mode."
options:
  node:
    description: The node whose pods are labelled.
    type: dict
    required: true
  labels:
    description: Pod name -> the dtService labels it should carry (from dtservice_reconcile).
    type: dict
    required: true
author: dtService project
"""

EXAMPLES = r"""
- name: Label the pods of this node
  dtservice_pod_label:
    node: "{{ dtservice_plan.nodes[inventory_hostname] }}"
    labels: {my-pod: {sid.sightline.dtservice.74dbd2ec528e4db3a496a893f85cd0d2: server}}
"""

RETURN = r"""
pods:
  description: Pod name -> labels written (a null value removes that label).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.dtservice.cluster import Cluster
    from ansible.module_utils.dtservice.module_args import NODE_OPTIONS, node_ref
    from ansible.module_utils.dtservice.plan import label_changes
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error


def main() -> None:
    module = AnsibleModule(argument_spec={"node": {"type": "dict", "required": True, "options": NODE_OPTIONS},
                                          "labels": {"type": "dict", "required": True}},
                           supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=f"dtservice_pod_label needs the kubernetes Python client: {IMPORT_ERROR}")
    cluster = Cluster(dry_run=module.check_mode)
    node = node_ref(module.params["node"])
    changes = label_changes(pods=cluster.list_pods(node), wanted=module.params["labels"])
    for pod, labels in changes.items():
        cluster.patch_pod_labels(node, pod, labels)
    result = {"changed": bool(changes), "pods": changes}
    if module._diff and changes:
        result["diff"] = {"before": {}, "after": changes}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
