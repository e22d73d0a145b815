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

import json
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan


def _plain(value: Any) -> Any:
    """``value`` as plain dicts and lists. Ansible hands a variable over in containers that
    template an item again at every access, and the plan looks up each node in every
    domain's members: 10,000 renderings at 100 nodes, a third of the lookup."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        group = terms[0] if terms else "federation"
        variables = variables or {}
        hosts = variables.get("groups", {}).get(group)
        if not hosts:
            raise AnsibleLookupError(f"dtservice_plan: inventory group {group!r} has no hosts")
        hostvars = variables["hostvars"]
        nodes, services, machines = {}, {}, {}
        domains = []
        for host in hosts:
            # One reading of each host: hostvars builds a host's variables anew at every access.
            facts = hostvars[host]
            try:
                nodes[host] = contract.node_params(host=host, host_vars=facts)
            except ValueError as error:
                raise AnsibleLookupError(f"dtservice_plan: {error}") from None
            services[host] = _plain(facts.get("dtservice_services") or [])
            if host == hosts[0]:
                domains = _plain(facts.get("dtservice_domains") or [])
            # Nodes driven through a local connection share this machine: one agent run serves them.
            machines[host] = ("localhost" if facts.get("ansible_connection") == "local"
                              else facts.get("ansible_host") or host)
        try:
            computed = plan.federation_plan(hosts=list(hosts), nodes=nodes, services=services, domains=domains,
                                            machines=machines, limit=kwargs.get("limit"))
        except (plan.PlanError, KeyError) as error:
            raise AnsibleLookupError(f"dtservice_plan: {error}") from None
        return [json.loads(json.dumps(computed))]
