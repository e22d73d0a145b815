"""Filter plugin of the Ethereum example: dtservice_address."""

from __future__ import annotations

DOCUMENTATION = r"""
name: dtservice_address
short_description: The overlay address of a dtService's own pod
description:
  - Given a dtService object as read from the API server (a dict with C(metadata.uid) and
    C(peers)), returns the overlay IPv4 address its pod has on the network, that is the server's entry
    (C(.1)) on the server, the client's own entry on a client. The entry is the one whose
    C(sid.sightline.dtservice.<id>) label carries the object's own id (the project's
    C(plan.self_entry)).
  - Fails with a clear message while the object has no entry of its own yet (before
    status C(Connected)).
options:
  _input:
    description: The dtService object.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Read the boot node's overlay address from its dtService
  ansible.builtin.set_fact:
    ethereum_bootnode_address: "{{ ethereum_bootnode_service.resources[0] | sightline.dtservice.dtservice_address }}"
"""

RETURN = r"""
_value:
  description: The overlay IPv4 address, for example C(100.96.0.1).
  type: string
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import enode


def dtservice_address(value):
    try:
        return enode.own_address(value)
    except enode.EnodeError as error:
        raise AnsibleFilterError(f"dtservice_address: {error}") from None


class FilterModule:
    def filters(self):
        return {"dtservice_address": dtservice_address}
