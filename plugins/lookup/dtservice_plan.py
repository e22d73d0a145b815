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
  - Returns one dict with C(nodes) (name -> node), C(federation) (the node list modules take),
    C(domains) (name -> dtDomain spec), C(domain_objects) and C(service_objects) (host -> the
    dtDomains and user-side dtServices to apply there), C(networks) (name -> domain, server node, attachments,
    interface names) and C(serves) (node -> networks it is the planned server of).
options:
  _terms:
    description: The inventory group of the federation's nodes.
    required: false
    default: [federation]
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
    from ansible.module_utils.dtservice import plan
except ImportError:  # plugins outside a collection do not see the module_utils path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
    from dtservice import plan

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
            }
            services[host] = list(facts.get("dtservice_services") or [])
        domains = list(hostvars[hosts[0]].get("dtservice_domains") or [])
        try:
            declared = plan.declared_plan(domains=domains, nodes=nodes, services=services, node_order=hosts)
        except (plan.PlanError, KeyError) as error:
            raise AnsibleLookupError(f"dtservice_plan: {error}") from None
        domain_specs = {
            d["name"]: plan.Domain(
                name=d["name"],
                members=tuple(plan.Member(name=nodes[m]["name"], namespace=nodes[m]["namespace"],
                                          address=nodes[m]["address"], port_range=nodes[m]["port_range"])
                              for m in d["members"]),
                pool=d.get("pool", "100.96.0.0/12"), subnet_prefix=d.get("subnet_prefix", 24),
                persistent_keepalive=d.get("persistent_keepalive", 25), mtu=d.get("mtu", 1420)).to_spec()
            for d in domains}
        domain_objects = {host: [plan.domain_object(name=d["name"], spec=domain_specs[d["name"]])
                                 for d in domains if host in d["members"]] for host in hosts}
        service_objects = {host: [plan.service_object(name=s["name"], domain=s["domain"], pod=s["pod"])
                                  for s in services[host]] for host in hosts}
        return [{"nodes": nodes, "federation": list(nodes.values()), "domains": domain_specs,
                 "domain_objects": domain_objects, "service_objects": service_objects, **declared}]
