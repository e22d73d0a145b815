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
    dtservice_manifest's C(clusters), each dtDomain once per API server with the
    C(namespaces) of its members there, the user-side dtServices per API server),
    C(agents) (the host that runs the node agent
    for each machine -> the nodes it serves), C(networks) (name -> domain, server node,
    attachments, interface names) and C(serves) (node -> networks it is the planned server
    of).
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
    dtservice_plan: "{{ lookup('dtservice_plan', 'federation') }}"
"""

RETURN = r"""
_raw:
  description: The plan (one dict).
  type: list
  elements: dict
"""

import sys
from pathlib import Path

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

try:
    from ansible.module_utils.dtservice import plan, podnet
except ImportError:  # plugins outside a collection do not see the module_utils path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
    from dtservice import plan, podnet

DEFAULT_PORT_RANGE = "51820-51919"


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        group = terms[0] if terms else "federation"
        variables = variables or {}
        hosts = variables.get("groups", {}).get(group)
        if not hosts:
            raise AnsibleLookupError(f"dtservice_plan: inventory group {group!r} has no hosts")
        hostvars = variables["hostvars"]
        nodes, services = {}, {}
        for host in hosts:
            facts = hostvars[host]
            missing = [v for v in ("dtservice_node_namespace", "dtservice_node_address") if not facts.get(v)]
            if missing:
                raise AnsibleLookupError(f"dtservice_plan: host {host} lacks {', '.join(missing)}")
            nodes[host] = {
                "name": facts.get("dtservice_node_name") or host,
                "namespace": facts["dtservice_node_namespace"],
                "address": facts["dtservice_node_address"],
                "kubeconfig": facts.get("dtservice_node_kubeconfig"),
                "context": facts.get("dtservice_node_context"),
                "port_range": facts.get("dtservice_node_port_range") or DEFAULT_PORT_RANGE,
                "netns": facts.get("dtservice_node_netns") or None,
                "kubelet_nodes": list(facts.get("dtservice_node_kubelet_nodes") or []),
                "runtime_endpoint": facts.get("dtservice_node_runtime_endpoint") or podnet.DEFAULT_RUNTIME_ENDPOINT,
                "pod_lookup": list(facts.get("dtservice_node_pod_lookup") or podnet.DEFAULT_METHODS),
                "crictl": facts.get("dtservice_node_crictl") or podnet.DEFAULT_CRICTL,
            }
            services[host] = list(facts.get("dtservice_services") or [])
        domains = list(hostvars[hosts[0]].get("dtservice_domains") or [])
        # Nodes driven through a local connection share this machine: one agent run serves them.
        machines = {host: "localhost" if hostvars[host].get("ansible_connection") == "local"
                    else hostvars[host].get("ansible_host") or host for host in hosts}
        try:
            return [plan.federation_plan(hosts=list(hosts), nodes=nodes, services=services, domains=domains,
                                         machines=machines, limit=kwargs.get("limit"))]
        except (plan.PlanError, KeyError) as error:
            raise AnsibleLookupError(f"dtservice_plan: {error}") from None
