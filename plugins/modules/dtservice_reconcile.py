#!/usr/bin/python
"""Ansible module: reconcile the provisioner-owned fields of the nodes' dtServices."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_reconcile
short_description: Apply the provisioner-owned fields of the nodes' dtServices
description:
  - For every dtService in each node's namespace (the nodes of one call side by side),
    ensures its WireGuard key Secret, registers its network on the domain's home dtDomain
    (new name -> new network with this pod as server), claims its overlay address on the
    server's C(peers) table, and writes the dtService's own C(peers), C(spec.server) and
    C(status) as the seed shows them, with a Kubernetes Event when something is wrong.
  - Adds the C(sid.sightlineinnovation.com/teardown) finalizer, so that a deletion waits for
    the pass that removes its interface and frees its address.
  - Then labels each pod with the roles of its dtServices (C(sid.sightline.dtservice.<id>)),
    removing labels of dtServices that are gone.
  - This is the first step of a pass over several machines (role dtservice_pass) - every
    claim is written before any machine configures an interface; M(sightline.dtservice.dtservice_node)
    runs the same step within one machine.
  - Shared tables are written with their resourceVersion, so concurrent joins never share an
    address. Nothing is written when nothing differs.
  - Check mode sends every write as a server-side dry run. Diff mode returns each object's
    owned fields before and after. Private keys never appear in the result.
extends_documentation_fragment:
  - sightline.dtservice.dtservice_nodes
  - sightline.dtservice.dtservice_serves
  - sightline.dtservice.dtservice_key_age
options:
  rotate_key:
    description:
      - Ask for a new key pair for the dtServices of the call (those O(rotate_networks) names,
        else all of each node's) by setting their C(sid.sightlineinnovation.com/rotate-key)
        annotation to this value. The new key is staged in the key Secret here and put to use
        by the node's next pass (dtservice_node, or the reconciler daemon), which records the
        value in the C(sid.sightlineinnovation.com/key-rotated) annotation. A value is served once.
    type: str
  rotate_networks:
    description: The dtServices (by name) O(rotate_key) asks new key pairs for; all of each node's when omitted.
    type: list
    elements: str
author: Sightline Innovation dtService maintainers (@sightlineinnovation)
"""

EXAMPLES = r"""
- name: Reconcile the dtServices of every node
  sightline.dtservice.dtservice_reconcile:
    nodes: "{{ dtservice_plan.federation }}"
    federation: "{{ dtservice_plan.federation }}"
    serves: "{{ dtservice_plan.serves }}"
"""

RETURN = r"""
services:
  description: Node name -> one entry per dtService reconciled there.
  returned: always
  type: dict
  contains:
    name: {description: dtService name (the network), type: str}
    status: {description: The status word written to the object, type: str}
    message: {description: "Why, when the status is not Connected or Pending", type: str}
    role: {description: server or client, type: str}
    address: {description: The pod's overlay address, type: str}
    subnet: {description: The network's CIDR, type: str}
    interface: {description: The WireGuard interface name in the pod, type: str}
    pod_labels: {description: Labels the pod should carry, type: dict}
    recheck_in:
      description:
        - For a hub whose pod is gone while it serves clients, seconds until its network is
          handed to a client (the dtDomain's C(failoverGraceSeconds)); the reconciler daemon
          runs the network's nodes again then. Null otherwise.
      type: float
pod_labels:
  description: Node name -> pod name -> the label changes written (a null value removes a label).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sightline.dtservice.plugins.module_utils.module_args import (
    KEY_AGE_ARGS,
    NODE_ARGS,
    SERVES_ARGS,
    federation_refs,
    nodes_runner,
    require,
)

try:
    from ansible_collections.sightline.dtservice.plugins.module_utils.machine.machine_pass import reconcile_nodes
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error

ARGUMENT_SPEC = {**NODE_ARGS, **SERVES_ARGS, **KEY_AGE_ARGS,
                 "rotate_key": {"type": "str", "no_log": False},
                 "rotate_networks": {"type": "list", "elements": "str"}}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""
    require(module, IMPORT_ERROR)
    federation = federation_refs(module.params)
    done = reconcile_nodes(nodes_runner(module), federation=federation,
                           serves=module.params["serves"], key_max_age=module.params["key_max_age"] or None,
                           rotate_key=module.params["rotate_key"] or None,
                           rotate_only=module.params["rotate_networks"])
    services = {name: node_outcomes for name, (node_outcomes, _labels) in done.items()}
    pod_labels = {name: labels for name, (_outcomes, labels) in done.items() if labels}
    outcomes = [o for node_outcomes in services.values() for o in node_outcomes]
    result = {"changed": any(o.changed for o in outcomes) or bool(pod_labels),
              "services": {name: [o.as_dict() for o in node_outcomes] for name, node_outcomes in services.items()},
              "pod_labels": pod_labels}
    if module._diff:
        result["diff"] = [o.diff() for o in outcomes if o.changed]
    module.exit_json(**result)


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
