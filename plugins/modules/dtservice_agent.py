#!/usr/bin/python
"""Ansible module: the node agent, bringing WireGuard interfaces into this node's pods."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_agent
short_description: Bring the WireGuard interfaces of the nodes' dtServices into their pods
description:
  - For every reconciled dtService of each node whose pod runs (the nodes of one call side by
    side; give a call the nodes of one machine), creates the WireGuard
    interface where the node's address lives (kernel WireGuard, else wireguard-go), moves
    it into the pod's network namespace, gives it its overlay address and MTU and applies
    its peers (a server gets one peer per client and forwards between them; a client gets
    the server with a persistent keepalive). Peer changes never take the interface down.
  - Writes C(status) C(Connected) once the interface is up and, for a client, a handshake
    with the server has been seen; otherwise C(ServerUnreachable) or C(Failed) with an Event.
  - Removes interfaces of ours from the node's pods when no dtService asks for them.
  - The private key is read from the dtService's Secret inside the module and goes only to
    the interface, through a 0600 file that is removed at once.
  - Check mode reports what would change and changes nothing.
extends_documentation_fragment: [sightline.dtservice.dtservice_nodes, sightline.dtservice.dtservice_machine]
author: Sightline Innovation dtService maintainers (@sightlineinnovation)
"""

EXAMPLES = r"""
- name: Bring the interfaces into this node's pods
  sightline.dtservice.dtservice_agent:
    nodes: ["{{ dtservice_plan.nodes[inventory_hostname] }}"]
    federation: "{{ dtservice_plan.federation }}"
"""

RETURN = r"""
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
removed:
  description: Node name -> interfaces removed from its pods (pod, interface).
  returned: always
  type: dict
"""

from dataclasses import asdict

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import Status
from ansible_collections.sightline.dtservice.plugins.module_utils.module_args import (
    NODE_ARGS,
    api_failures,
    federation_refs,
    run_on_nodes,
    side_by_side,
)

try:
    from ansible_collections.sightline.dtservice.plugins.module_utils.data.podnet import RuntimeViews
    from ansible_collections.sightline.dtservice.plugins.module_utils.machine.agent import NodeAgent
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error


ARGUMENT_SPEC = {**NODE_ARGS, "handshake_timeout": {"type": "float", "default": 45}}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""
    federation = federation_refs(module.params)
    runtimes = RuntimeViews() if IMPORT_ERROR is None else None

    def configure(*, cluster, node):
        agent = NodeAgent(cluster=cluster, node=node, federation=federation,
                          handshake_timeout=module.params["handshake_timeout"], check_mode=module.check_mode,
                          runtimes=runtimes)
        return agent, agent.configure()

    # Every node's interfaces first, then the waits: a server of this machine then knows its
    # new clients before they are waited on.
    configured = run_on_nodes(module, configure, import_error=IMPORT_ERROR)
    with api_failures(module, refused="a status write"):
        side_by_side([agent for agent, _outcome in configured.values()], lambda agent: agent.settle())
    done = {name: outcome for name, (_agent, outcome) in configured.items()}
    interfaces = {name: [asdict(o) for o in outcomes] for name, (outcomes, _gone) in done.items()}
    removed = {name: gone for name, (_outcomes, gone) in done.items() if gone}
    result = {"changed": bool(removed) or any(o["changed"] for items in interfaces.values() for o in items),
              "interfaces": interfaces, "removed": removed}
    failed = [f"{name}/{o['name']}: {o['message']}" for name, items in interfaces.items() for o in items
              if o["status"] == Status.FAILED]
    if failed:
        module.fail_json(msg="; ".join(failed), **result)
    module.exit_json(**result)


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
