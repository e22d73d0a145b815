#!/usr/bin/python
"""Ansible module: one whole reconcile pass over a node (the reconciler daemon's step)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_node
short_description: Reconcile everything of the nodes of one machine in one pass
description:
  - Runs, in one process - reconcile the nodes' dtServices (adding the teardown finalizer),
    label their pods, bring their interfaces into the pods (kernel WireGuard, else
    wireguard-go, moved into the pod's network namespace) and remove those of deleted
    dtServices, wait for the clients' first handshakes - and then finishes the deletions
    users asked for (the peer leaves the network, the key Secret goes, the finalizer is
    released). This is the pass of deploy.yml and of the reconciler daemon alike (role
    dtservice_pass), one module run per machine.
  - Writes C(status) C(Connected) once an interface is up and, for a client, a handshake with
    its server has been seen; otherwise C(ServerUnreachable) or C(Failed) with an Event.
  - The private key is read from the dtService's Secret inside the module and goes only to
    the interface, through a 0600 file that is removed at once.
  - Phases span all nodes of the call - every node is reconciled before any interface is
    configured - so a joiner and its network's server reconciled together connect in one call.
  - Check mode sends every write as a server-side dry run and changes no interface.
  - A dtService whose key is due for rotation (asked for with its
    C(sid.sightlineinnovation.com/rotate-key) annotation, or older than O(key_max_age)) gets a
    new key pair in the same pass, with no packet lost on its tunnels; see docs/day2.md,
    "Key rotation".
extends_documentation_fragment:
  - sightline.dtservice.dtservice_nodes
  - sightline.dtservice.dtservice_machine
  - sightline.dtservice.dtservice_serves
  - sightline.dtservice.dtservice_key_age
options:
  plan_machine:
    description:
      - The agent host of a machine (a key of the plan's C(agents), as a rule
        C(inventory_hostname)); the action plugin takes that machine's nodes, with the
        federation and C(serves), from the plan the controller keeps (the dtservice_plan fact,
        see M(sightline.dtservice.dtservice_plan)), instead of O(nodes), O(federation) and
        O(serves), which are not given then.
      - Read as the plan was stored, on the controller; templated into the task, its values
        were walked again (a tenth of a second at 100 nodes).
    type: str
  record_health:
    description:
      - Record each interface's number of peers and newest handshake in its dtService's
        annotations (C(sid.sightlineinnovation.com/peers), C(sid.sightlineinnovation.com/latest-handshake)),
        which C(kubectl get dtservices) prints. The reconciler daemon's passes do, since they
        come again every resync and keep the figures current; a one-shot run would leave a
        handshake time that only ages.
    type: bool
    default: false
author: Sightline Innovation dtService maintainers (@sightlineinnovation)
"""

EXAMPLES = r"""
- name: Reconcile the nodes of this machine in one pass, from the plan the controller keeps
  sightline.dtservice.dtservice_node:
    plan_machine: "{{ inventory_hostname }}"

- name: Reconcile this node in one pass
  sightline.dtservice.dtservice_node:
    nodes: ["{{ dtservice_plan.nodes[inventory_hostname] }}"]
    federation: "{{ dtservice_plan.federation }}"
    serves: "{{ dtservice_plan.serves }}"
"""

RETURN = r"""
services:
  description: Node name -> what M(sightline.dtservice.dtservice_reconcile) returns per dtService.
  returned: always
  type: dict
interfaces:
  description: Node name -> one entry per dtService with a running pod.
  returned: always
  type: dict
  contains:
    name: {description: dtService name, type: str}
    interface: {description: Interface name in the pod, type: str}
    status: {description: Status written, type: str}
    message: {description: "Why, when not Connected", type: str}
    created: {description: The interface was made in this run, type: bool}
    peers_added: {description: Public keys of peers added, type: list}
    peers_removed: {description: Public keys of peers removed, type: list}
    tunnels:
      description:
        - One entry per peer of the interface, as this run's probe read it (the reconciler daemon's
          per-peer metrics); C(peer) is its overlay address, C(latest_handshake) epoch seconds (0 = never).
      type: list
      elements: dict
removed_interfaces:
  description: Node name -> interfaces removed from pods.
  returned: always
  type: dict
deleted:
  description: Node name -> dtServices whose deletion this pass finished.
  returned: always
  type: dict
pod_labels:
  description: Node name -> label patches applied to pods.
  returned: always
  type: dict
deletions_held:
  description:
    - Node name -> dtService -> why its deletion could not finish in this pass (the node of its
      network's hub or home did not answer). The finalizer keeps holding it; the next pass
      tries again, and the other deletions of the pass went on.
  returned: always
  type: dict
node_errors:
  description:
    - Node name -> why the pass could not work on that node at all (its API server did not
      answer, the provisioner's rights there are gone). The other nodes of the call were
      served; the module fails naming these nodes.
  returned: always
  type: dict
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef, Status
from ansible_collections.sightline.dtservice.plugins.module_utils.module_args import (
    KEY_AGE_ARGS,
    NODE_ARGS,
    SERVES_ARGS,
    federation_refs,
    nodes_runner,
    require,
)

try:
    from ansible_collections.sightline.dtservice.plugins.module_utils.machine.machine_pass import machine_pass
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error


ARGUMENT_SPEC = {**NODE_ARGS, **SERVES_ARGS, **KEY_AGE_ARGS, "handshake_timeout": {"type": "float", "default": 45},
                 "record_health": {"type": "bool", "default": False}, "plan_machine": {"type": "str"}}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""
    require(module, IMPORT_ERROR)
    if module.params["plan_machine"] is not None:
        # The plan is the controller's: only the action plugin has it.
        module.fail_json(msg="plan_machine is made into nodes by the module's action plugin, on the controller")
    federation = federation_refs(module.params)
    done = machine_pass(nodes_runner(module), nodes=[NodeRef.from_params(node) for node in module.params["nodes"]],
                        federation=federation,
                        serves=module.params["serves"], handshake_timeout=module.params["handshake_timeout"],
                        check_mode=module.check_mode, record_health=module.params["record_health"],
                        key_max_age=module.params["key_max_age"] or None)
    keys = ("services", "interfaces", "removed_interfaces", "deleted", "deletions_held", "pod_labels")
    result: dict[str, Any] = {key: {name: passed[key] for name, passed in done.items()} for key in keys}
    result["changed"] = any(passed["changed"] for passed in done.values())
    result["node_errors"] = {name: passed["error"] for name, passed in done.items() if passed["error"]}
    failed = [f"{name}: {error}" for name, error in result["node_errors"].items()]
    failed += [f"{name}/{i['name']}: {i['message']}" for name, passed in done.items() for i in passed["interfaces"]
               if i["status"] == Status.FAILED]
    if failed:
        module.fail_json(msg="; ".join(failed), **result)
    module.exit_json(**result)


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
