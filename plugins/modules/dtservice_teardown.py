#!/usr/bin/python
"""Ansible module: take dtServices of a node out of their networks and delete them."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_teardown
short_description: Remove a node's dtServices from their networks and delete them
description:
  - For each selected dtService of the node, frees its address on the server's C(peers)
    table (a client) or removes its network from the domain registry (the server), deletes
    its key Secret and deletes the object. Run the node agent afterwards on every node; it
    removes the interfaces and the departed peers.
  - Check mode sends every write as a server-side dry run.
options:
  node:
    description: The node (name, namespace, kubeconfig...).
    type: dict
    required: true
  federation:
    description: Every federation node.
    type: list
    elements: dict
    required: true
  services:
    description: dtService names to remove; every dtService of the node when omitted.
    type: list
    elements: str
  deleted_only:
    description:
      - Only finish the deletion of dtServices a user already deleted (those waiting on the
        C(sid.sightlineinnovation.com/teardown) finalizer), as the reconciler daemon does.
    type: bool
    default: false
author: dtService project
"""

EXAMPLES = r"""
- name: Take myservice off this node
  dtservice_teardown:
    node: "{{ dtservice_plan.nodes[inventory_hostname] }}"
    federation: "{{ dtservice_plan.federation }}"
    services: [myservice]
"""

RETURN = r"""
removed:
  description: Names of the dtServices removed.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.dtservice.cluster import Cluster
    from ansible.module_utils.dtservice.module_args import NODE_ARGS, federation_refs, node_ref
    from ansible.module_utils.dtservice.teardown import remove_service
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error


def main() -> None:
    module = AnsibleModule(argument_spec={**NODE_ARGS, "services": {"type": "list", "elements": "str"},
                                          "deleted_only": {"type": "bool", "default": False}},
                           supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=f"dtservice_teardown needs the kubernetes Python client: {IMPORT_ERROR}")
    cluster = Cluster(dry_run=module.check_mode)
    node = node_ref(module.params["node"])
    federation = federation_refs(module.params)
    wanted = module.params["services"]
    removed = []
    for service in cluster.list_services(node):
        if module.params["deleted_only"] and not service["metadata"].get("deletionTimestamp"):
            continue
        if wanted is None or service["metadata"]["name"] in wanted:
            remove_service(cluster=cluster, node=node, federation=federation, service=service)
            removed.append(service["metadata"]["name"])
    module.exit_json(changed=bool(removed), removed=removed)


if __name__ == "__main__":
    main()
