#!/usr/bin/python
"""Documentation of the dtservice_plan action, which runs on the controller only
(plugins/action/dtservice_plan.py), as ansible.builtin.set_fact's module file documents its
action."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_plan
short_description: Keep the dtService federation plan of an inventory group as a fact
description:
  - Computes the plan the C(sightline.dtservice.dtservice_plan) lookup returns (see its
    documentation for the keys) from the inventory on the controller, without contacting
    any API server, and keeps it as the fact C(dtservice_plan) of the host the task runs
    for (with C(delegate_to) and C(delegate_facts), of that host).
  - Bad declarations fail the task, before anything changes.
  - Faster than C(set_fact) with the lookup, since a fact an action returns is not walked by
    the templating engine the way a template's result is. The task's result is shown
    censored, as with C(no_log) (the callbacks copied the whole plan, and printed it from
    C(-v) on); the plan is read from the fact.
author: Sightline Innovation dtService maintainers (@sightlineinnovation)
options:
  group:
    description: The inventory group of the federation's nodes.
    type: str
    default: federation
  limit:
    description:
      - As the lookup's C(limit) - the hosts of a limited run (C(ansible_play_hosts)), whose
        nodes alone C(agents) then covers.
    type: list
    elements: str
notes:
  - Runs on the controller; no connection to the host is made. Supports check mode (it only
    computes); no diff.
seealso:
  - plugin: sightline.dtservice.dtservice_plan
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Compute the federation plan once, on the controller, for every later play
  sightline.dtservice.dtservice_plan:
  run_once: true
  delegate_to: localhost
  delegate_facts: true

- name: Read it later
  ansible.builtin.debug:
    msg: "{{ hostvars.localhost.ansible_facts.dtservice_plan.agents }}"
"""

RETURN = r"""
ansible_facts:
  description: The plan, as the fact C(dtservice_plan).
  returned: success
  type: dict
  contains:
    dtservice_plan:
      description: The federation plan (keys as the lookup documents them).
      type: dict
      sample: {"nodes": {}, "federation": [], "agents": {"node0": ["node0"]}, "serves": {}}
"""
