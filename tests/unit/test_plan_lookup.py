"""The plan lookup inside Ansible: what it gives from an inventory whose declarations are
templates, as users write them (members from a group, namespaces from the host's name)."""

from __future__ import annotations

import json
import sys

from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import plan
from ansible_collections.sightline.dtservice.plugins.plugin_utils import inventory_plan
from conftest import ansible_playbook

GROUP_VARS = """
dtservice_node_namespace: "dtaas-{{ inventory_hostname }}-dtaas"
dtservice_node_kubeconfig: "/k/{{ inventory_hostname[-1] | int % 2 }}.kubeconfig"
dtservice_node_address: "198.18.0.{{ 10 + inventory_hostname[-1] | int }}"
dtservice_domains:
  - name: mydomain
    members: "{{ groups.federation }}"
  - name: firsttwo
    members: "{{ groups.federation[:2] }}"
dtservice_services:
  - {name: net, domain: mydomain, pod: "p{{ inventory_hostname[-1] }}"}
"""

PLAYBOOK = """
- name: Write the plan
  hosts: federation
  gather_facts: false
  tasks:
    - name: Compute the plan
      ansible.builtin.set_fact:
        dtservice_plan: "{{ lookup('sightline.dtservice.dtservice_plan', 'federation') }}"
      run_once: true
      delegate_to: localhost
      delegate_facts: true

- name: Write it out
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the plan as JSON
      ansible.builtin.copy:
        content: "{{ dtservice_plan | to_json }}"
        dest: "{{ plan_file }}"
        mode: "0600"
"""


def test_the_lookup_plans_templated_declarations_as_their_values(tmp_path):
    hosts = [f"node{i}" for i in range(4)]
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "federation.yml").write_text(GROUP_VARS)
    (tmp_path / "hosts.yml").write_text(json.dumps({"federation": {
        "hosts": dict.fromkeys(hosts, {}),
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    (tmp_path / "plan.yml").write_text(PLAYBOOK)
    written = tmp_path / "plan.json"
    result = ansible_playbook("-i", tmp_path / "hosts.yml", tmp_path / "plan.yml", "-e", f"plan_file={written}")
    assert result.returncode == 0, result.stdout + result.stderr

    nodes = {h: {"name": h, "namespace": f"dtaas-{h}-dtaas", "address": f"198.18.0.{10 + i}",
                 "kubeconfig": f"/k/{i % 2}.kubeconfig"} for i, h in enumerate(hosts)}
    expected = plan.federation_plan(
        hosts=hosts, machines=dict.fromkeys(hosts, "localhost"),
        nodes={h: contract.node_params(host=h, host_vars={f"dtservice_node_{k}": v for k, v in node.items()})
               for h, node in nodes.items()},
        domains=[{"name": "mydomain", "members": hosts}, {"name": "firsttwo", "members": hosts[:2]}],
        services={h: [{"name": "net", "domain": "mydomain", "pod": f"p{i}"}] for i, h in enumerate(hosts)})
    assert json.loads(written.read_text()) == json.loads(json.dumps(expected))
    # One machine: its first host runs the pass for every node, named by host.
    assert expected["agents"] == {"node0": hosts}


ACTION_PLAYBOOK = """
- name: Keep the plan with the action, and compute it with the lookup too
  hosts: federation
  gather_facts: false
  tasks:
    - name: Keep the plan on the controller
      sightline.dtservice.dtservice_plan:
      run_once: true
      delegate_to: localhost
      delegate_facts: true

    - name: Write both as JSON
      ansible.builtin.copy:
        content: "{{ {'kept': hostvars.localhost.ansible_facts.dtservice_plan,
                      'looked_up': lookup('sightline.dtservice.dtservice_plan', 'federation')} | to_json }}"
        dest: "{{ plan_file }}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
"""

UNPLANNED_PLAYBOOK = """
- name: Run a pass without a plan on the controller
  hosts: node0
  gather_facts: false
  tasks:
    - name: Pass over this machine
      sightline.dtservice.dtservice_node:
        plan_machine: node0
"""

EMPTY_GROUP_PLAYBOOK = """
- name: Plan a group without hosts
  hosts: node0
  gather_facts: false
  tasks:
    - name: Keep the plan
      sightline.dtservice.dtservice_plan:
        group: nobody
"""


def federation_inventory(tmp_path) -> str:
    hosts = [f"node{i}" for i in range(4)]
    (tmp_path / "group_vars").mkdir(exist_ok=True)
    (tmp_path / "group_vars" / "federation.yml").write_text(GROUP_VARS)
    (tmp_path / "hosts.yml").write_text(json.dumps({"federation": {
        "hosts": dict.fromkeys(hosts, {}),
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    return str(tmp_path / "hosts.yml")


def test_the_action_keeps_the_plan_the_lookup_returns(tmp_path):
    (tmp_path / "plan.yml").write_text(ACTION_PLAYBOOK)
    written = tmp_path / "plan.json"
    result = ansible_playbook("-i", federation_inventory(tmp_path), tmp_path / "plan.yml",
                              "-e", f"plan_file={written}")
    assert result.returncode == 0, result.stdout + result.stderr
    both = json.loads(written.read_text())
    assert both["kept"] == both["looked_up"]
    assert sorted(both["kept"]["nodes"]) == [f"node{i}" for i in range(4)]
    # Kept without its values in the output: the plan of a hundred nodes is not printed.
    assert "dtaas-node0-dtaas" not in result.stdout


def test_without_a_kept_plan_or_hosts_the_tasks_fail_saying_so(tmp_path):
    inventory = federation_inventory(tmp_path)
    for playbook, words in ((UNPLANNED_PLAYBOOK, "no federation plan on the controller"),
                            (EMPTY_GROUP_PLAYBOOK, "inventory group 'nobody' has no hosts")):
        (tmp_path / "play.yml").write_text(playbook)
        result = ansible_playbook("-i", inventory, tmp_path / "play.yml")
        assert result.returncode != 0 and words in result.stdout, result.stdout + result.stderr


def test_only_values_holding_a_template_are_templated():
    may_template = inventory_plan._may_template
    assert not may_template("dtaas-node0-dtaas")
    assert not may_template({"name": "net", "pods": ["p0", 3, None], "port": 51820})
    assert may_template("dtaas-{{ inventory_hostname }}")
    assert may_template("{% if x %}a{% endif %}")
    assert may_template([{"name": "net", "members": ["a", "{{ groups.federation }}"]}])
    assert may_template({"{# a key #}": "value"})
    assert may_template("#jinja2:variable_start_string:'[%'\n[% x %]")
