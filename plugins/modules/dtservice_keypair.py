#!/usr/bin/python
"""Ansible module: one WireGuard key pair per dtService, kept in a Secret of its node."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_keypair
short_description: Ensure every dtService of the nodes has its X25519 key pair
description:
  - For each dtService in each node's namespace, makes sure the Secret
    C(dtservice-<name>-wg) holds a valid X25519 private key owned by that dtService (the
    garbage collector deletes it with the dtService). A missing or foreign Secret is
    replaced by a new key; an existing one is kept, so keys are stable across runs and pod
    restarts.
  - The private key is generated inside the module and written only to the Secret; it is
    never returned, logged or put in facts. Only public keys are returned.
  - Check mode sends the Secret as a server-side dry run (the public key returned is then the
    one a real run would not keep).
options:
  nodes:
    description: The nodes (name, namespace, kubeconfig...).
    type: list
    elements: dict
    required: true
author: dtService project
"""

EXAMPLES = r"""
- name: Make sure every dtService of every node has its key pair
  dtservice_keypair:
    nodes: "{{ dtservice_plan.federation }}"
"""

RETURN = r"""
public_keys:
  description: Node name -> dtService name -> its WireGuard public key.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dtservice.module_args import NODE_OPTIONS, run_on_nodes

try:
    from ansible.module_utils.dtservice.reconcile import KEY_SECRET_LABEL, ensure_key_secret, key_secret_name
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error


ARGUMENT_SPEC = {"nodes": {"type": "list", "elements": "dict", "required": True, "options": NODE_OPTIONS}}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""

    def ensure(*, cluster, node):
        secrets = cluster.list_secrets(node, label_selector=KEY_SECRET_LABEL)
        public_keys = {}
        for service in cluster.list_services(node):
            if service["metadata"].get("deletionTimestamp"):
                continue
            name = service["metadata"]["name"]
            public_keys[name] = ensure_key_secret(cluster=cluster, node=node, service=service,
                                                  secret=secrets.get(key_secret_name(name)))
        return cluster.writes > 0, public_keys

    done = run_on_nodes(module, ensure, import_error=IMPORT_ERROR)
    module.exit_json(changed=any(changed for changed, _ in done.values()),
                     public_keys={name: keys for name, (_, keys) in done.items()})


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
