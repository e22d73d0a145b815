#!/usr/bin/python
"""Ansible module: take dtServices of a node out of their networks and delete them."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_teardown
short_description: Remove the nodes' dtServices from their networks and delete them
description:
  - Deletes every selected dtService of every node first (the provisioner's finalizer holds
    each), then, for each, frees its address on the server's C(peers) table (a client) or
    hands its network to a client that stays, or removes it from the domain registry (the
    server), deletes its key Secret and releases the finalizer. Run the pass afterwards on every machine (role
    dtservice_pass); it removes the interfaces and the departed peers.
  - Check mode sends every write as a server-side dry run.
extends_documentation_fragment: [sightline.dtservice.dtservice_nodes]
options:
  services:
    description: dtService names to remove; every dtService of the node when omitted.
    type: list
    elements: str
author: Sightline Innovation dtService maintainers (@sightlineinnovation)
"""

EXAMPLES = r"""
- name: Take myservice off node2
  sightline.dtservice.dtservice_teardown:
    nodes: ["{{ dtservice_plan.nodes.node2 }}"]
    federation: "{{ dtservice_plan.federation }}"
    services: [myservice]
"""

RETURN = r"""
removed:
  description: Node name -> names of the dtServices removed there.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sightline.dtservice.plugins.module_utils.module_args import (
    NODE_ARGS,
    federation_refs,
    nodes_runner,
)

try:
    from ansible_collections.sightline.dtservice.plugins.module_utils.control.teardown import remove_chosen
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error


ARGUMENT_SPEC = {**NODE_ARGS, "services": {"type": "list", "elements": "str"}}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""
    run_on_nodes = nodes_runner(module, import_error=IMPORT_ERROR)  # fails first when a library is missing
    removed = remove_chosen(run_on_nodes, federation=federation_refs(module.params), names=module.params["services"])
    module.exit_json(changed=bool(removed), removed=removed)


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
