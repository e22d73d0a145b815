"""Lookup plugin: the federation plan of the inventory, for playbooks."""

from __future__ import annotations

DOCUMENTATION = r"""
name: dtservice_plan
short_description: The dtService federation plan of an inventory group
description:
  - Gathers every host of the group (default C(federation)) as a federation node from its
    C(dtservice_node_*) variables, checks the declared C(dtservice_domains) and per-host
    C(dtservice_services), and returns the plan the roles apply, without contacting any API
    server. Bad declarations fail here, before anything changes.
  - Returns one dict with C(nodes) (host -> node), C(federation) (the node list modules
    take), C(domains) (name -> dtDomain spec), C(manifests) (C(domains) and C(services), as
    dtservice_manifest's C(clusters), per API server each member's copy of its dtDomains in
    its namespace (home's lists every member, another member's home and itself) and the
    user-side dtServices),
    C(agents) (the host that runs the node agent for each machine -> the hosts of the nodes it
    serves, keys of C(nodes)), C(networks) (name -> domain, server node, attachments, interface
    names) and C(serves) (node -> networks it is the planned server of).
options:
  _terms:
    description: The inventory group of the federation's nodes.
    required: false
    default: [federation]
  limit:
    description:
      - Hosts of a limited run (C(ansible_play_hosts)); C(agents) then covers only their nodes,
        each machine's agent on the first of them. The rest of the plan stays whole.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Compute the plan once
  ansible.builtin.set_fact:
    dtservice_plan: "{{ lookup('sightline.dtservice.dtservice_plan', 'federation') }}"
"""

RETURN = r"""
_raw:
  description: The plan (one dict).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inventory_plan import (
    InventoryPlanError,
    inventory_plan,
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        try:
            return [inventory_plan(variables=variables or {}, group=terms[0] if terms else "federation",
                                   limit=kwargs.get("limit"))]
        except InventoryPlanError as error:
            raise AnsibleLookupError(str(error)) from None
