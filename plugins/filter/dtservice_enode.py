"""Filter plugin of the Ethereum example: dtservice_enode (dtservice_address is its neighbour)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: dtservice_enode
short_description: Rewrite an enode URL's host to a dtService overlay address
description:
  - Replaces the host of an Ethereum enode URL
    (C(enode://<128 hex node id>@<host>:<port>[?discport=<port>])) with the dtService overlay
    IPv4 address of the node's pod, keeping the node id, the port and the query, as the seed's
    Ethereum example does by hand. Peers on other federation nodes use the result as
    C(--bootnodes) or C(admin.addPeer).
  - A value quoted as C(geth attach --exec admin.nodeInfo.enode) prints it keeps its quotes.
  - Fails with a message naming the fault on a wrong scheme, a node id that is not 128 hex
    digits, a missing or out-of-range port or discport, or an address that is not IPv4.
positional: address
options:
  _input:
    description: The enode URL, as C(admin.nodeInfo.enode) returns it.
    type: string
    required: true
  address:
    description: The overlay IPv4 address (a dtService C(peers) key, see C(dtservice_address)).
    type: string
    required: true
"""

EXAMPLES = r"""
# The seed: enode://e0fa...6503@10.1.111.77:30303 -> enode://e0fa...6503@100.96.0.1:30303
- name: Rewrite the boot node's enode to its dtService address
  ansible.builtin.set_fact:
    ethereum_bootnode_enode: "{{ ethereum_bootnode_info.enode | sightline.dtservice.dtservice_enode('100.96.0.1') }}"
"""

RETURN = r"""
_value:
  description: The enode URL with the overlay address as its host.
  type: string
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import enode


def dtservice_enode(value, address):
    try:
        return enode.rewrite_enode(value, address)
    except enode.EnodeError as error:
        raise AnsibleFilterError(f"dtservice_enode: {error}") from None


class FilterModule:
    def filters(self):
        return {"dtservice_enode": dtservice_enode}
