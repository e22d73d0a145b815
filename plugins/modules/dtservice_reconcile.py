#!/usr/bin/python
"""Ansible module: reconcile the provisioner-owned fields of one node's dtServices."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_reconcile
short_description: Apply the provisioner-owned fields of a node's dtServices
description:
  - For every dtService in the node's namespace, ensures its WireGuard key Secret, registers
    its network on the domain's home dtDomain (new name -> new network with this pod as
    server), claims its overlay address on the server's C(peers) table, and writes the
    dtService's own C(peers), C(spec.server) and C(status) as the seed shows them, with a
    Kubernetes Event when something is wrong.
  - Shared tables are written with their resourceVersion, so concurrent joins never share an
    address. Nothing is written when nothing differs.
  - Check mode sends every write as a server-side dry run. Diff mode returns each object's
    owned fields before and after. Private keys never appear in the result.
options:
  node:
    description: The node to reconcile (name, namespace, underlay address, kubeconfig...).
    type: dict
    required: true
  federation:
    description: Every federation node, so other members' objects can be read and written.
    type: list
    elements: dict
    required: true
  services:
    description: Only these dtServices (by name); all of the namespace when omitted.
    type: list
    elements: str
  finalizer:
    description:
      - Add the C(sid.sightlineinnovation.com/teardown) finalizer, so that a deletion waits
        for the teardown (set by the reconciler daemon, which releases it).
    type: bool
    default: false
author: dtService project
"""

EXAMPLES = r"""
- name: Reconcile the dtServices of this node
  dtservice_reconcile:
    node: "{{ dtservice_plan.nodes[inventory_hostname] }}"
    federation: "{{ dtservice_plan.nodes.values() | list }}"
"""

RETURN = r"""
services:
  description: One entry per dtService reconciled.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: dtService name (the network), type: str}
    status: {description: The status word written to the object, type: str}
    message: {description: Why, when the status is not Connected or Pending, type: str}
    role: {description: server or client, type: str}
    address: {description: The pod's overlay address, type: str}
    subnet: {description: The network's CIDR, type: str}
    interface: {description: The WireGuard interface name in the pod, type: str}
    pod_labels: {description: Labels the pod should carry, type: dict}
pod_labels:
  description: Pod name -> every dtService label it should carry (input of dtservice_pod_label).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.dtservice.cluster import Cluster
    from ansible.module_utils.dtservice.module_args import NODE_ARGS, federation_refs, node_ref
    from ansible.module_utils.dtservice.plan import pods_labels
    from ansible.module_utils.dtservice.reconcile import NodeReconciler
    IMPORT_ERROR = None
except ImportError as error:  # the kubernetes client is missing on the target
    IMPORT_ERROR = error


def main() -> None:
    module = AnsibleModule(argument_spec={**NODE_ARGS, "services": {"type": "list", "elements": "str"},
                                          "finalizer": {"type": "bool", "default": False}},
                           supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=f"dtservice_reconcile needs the kubernetes Python client: {IMPORT_ERROR}")
    cluster = Cluster(dry_run=module.check_mode)
    reconciler = NodeReconciler(cluster=cluster, node=node_ref(module.params["node"]),
                                federation=federation_refs(module.params))
    only = set(module.params["services"]) if module.params["services"] is not None else None
    outcomes = reconciler.reconcile(only=only, finalizer=module.params["finalizer"])
    services = [o.as_dict() for o in outcomes]
    result = {"changed": any(o.changed for o in outcomes), "services": services,
              "pod_labels": pods_labels(services)}
    if module._diff:
        result["diff"] = [o.diff() for o in outcomes if o.changed]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
